#include "shm/region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "shm/error.hpp"

namespace shmchan {

namespace {
class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "shmchan"; }
    std::string message(int value) const override {
        switch (static_cast<Errc>(value)) {
            case Errc::bad_name: return "bad channel name";
            case Errc::bad_magic: return "not a shmchan channel (bad magic)";
            case Errc::bad_version: return "unsupported ABI version";
            case Errc::corrupt: return "corrupt channel";
            case Errc::not_ready: return "channel not initialized in time";
            case Errc::geometry_mismatch: return "geometry mismatch";
            case Errc::framing_mismatch: return "framing mismatch";
            case Errc::side_taken: return "side already attached";
            case Errc::stream_ended: return "stream already ended";
            case Errc::unsafe_file: return "unsafe file";
            case Errc::bad_options: return "bad options";
        }
        return "unknown shmchan error";
    }
};
}  // namespace

const std::error_category& shmchan_category() noexcept {
    static const Category category;
    return category;
}

Error Error::from_errno(int errno_value, const std::string& what) {
    return Error(std::error_code(errno_value, std::generic_category()),
                 what + ": " + std::strerror(errno_value));
}

}  // namespace shmchan

namespace shmchan::shm {

std::string region_directory() {
    const char* dir = std::getenv("SHMCHAN_DIR");
    if (dir && *dir) return dir;
    return "/dev/shm";
}

bool is_valid_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxNameLength) return false;
    if (name == "." || name == "..") return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void validate_name(std::string_view name) {
    if (!is_valid_name(name)) {
        throw Error(Errc::bad_name, "invalid channel name '" + std::string(name) +
                                        "': use 1 to 200 of the characters A-Z a-z 0-9 . _ - "
                                        "(not '.' or '..')");
    }
}

std::string region_path(std::string_view name, std::string_view prefix) {
    validate_name(name);
    std::string path = region_directory();
    path += '/';
    path += prefix;
    path += name;
    return path;
}

Region::Region(Region&& other) noexcept { *this = std::move(other); }

Region& Region::operator=(Region&& other) noexcept {
    if (this != &other) {
        unmap();
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        writable_ = other.writable_;
        path_ = std::move(other.path_);
    }
    return *this;
}

Region::~Region() {
    unmap();
    if (fd_ >= 0) ::close(fd_);  // drops every lock of this open file description
}

void Region::unmap() noexcept {
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
}

void Region::map(std::size_t size) {
    unmap();
    if (size == 0) return;
    int prot = writable_ ? (PROT_READ | PROT_WRITE) : PROT_READ;
    void* address = ::mmap(nullptr, size, prot, MAP_SHARED, fd_, 0);
    if (address == MAP_FAILED) throw Error::from_errno(errno, "mmap of " + path_);
    // A process that attaches (writable) gets its page tables filled now, writable: otherwise
    // the first write to each 4 KiB page in its first lap of the ring costs a minor fault
    // (~5 us here) in the middle of the data path (MAP_POPULATE maps shared pages read-only, so
    // it does not help). MADV_POPULATE_WRITE (Linux 5.14) faults them in without writing to
    // them; an older kernel refuses it (EINVAL) and the faults simply happen later. Read-only
    // mappings (inspectors) stay lazy.
    if (writable_) {
#ifdef MADV_POPULATE_WRITE
        (void)::madvise(address, size, MADV_POPULATE_WRITE);
#endif
    }
    data_ = address;
    size_ = size;
}

std::size_t Region::file_size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw Error::from_errno(errno, "fstat of " + path_);
    return static_cast<std::size_t>(st.st_size);
}

void Region::remap_whole_file() { map(file_size()); }

Region Region::create(const std::string& path, std::size_t size, const AccessPolicy& policy,
                      std::uint64_t creating_lock_offset) {
    Region region;
    region.path_ = path;
    region.writable_ = true;
    region.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        policy.mode & 0777);
    if (region.fd_ < 0) {
        int error = errno;
        if (error == EEXIST) throw Error::from_errno(error, "create " + path);
        throw Error::from_errno(error, "create " + path + " (is the directory there and writable?)");
    }
    // From here on, any failure must remove the file we created, or it would look like a
    // half-made channel to everybody else.
    try {
        if (!region.try_lock(creating_lock_offset, LockKind::exclusive)) {
            throw Error::from_errno(EAGAIN, "lock the creation mark of " + path);
        }
        // open(2) applies the umask; the mode asked for is what the file gets.
        if (::fchmod(region.fd_, policy.mode & 0777) != 0) {
            throw Error::from_errno(errno, "fchmod " + path);
        }
        // Reserve every page now: on tmpfs this allocates them, so a full /dev/shm fails here
        // with ENOSPC instead of with a SIGBUS at the first touch of a missing page.
        int rc = ::posix_fallocate(region.fd_, 0, static_cast<off_t>(size));
        if (rc != 0) {
            throw Error::from_errno(rc, "reserve " + std::to_string(size) + " bytes for " + path +
                                            (rc == ENOSPC ? " (not enough free space in " +
                                                                region_directory() + ")"
                                                          : std::string()));
        }
        region.map(size);
    } catch (...) {
        ::unlink(path.c_str());
        throw;
    }
    return region;
}

Region Region::open(const std::string& path, const AccessPolicy& policy, bool writable) {
    Region region;
    region.path_ = path;
    region.writable_ = writable;
    region.fd_ = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
    if (region.fd_ < 0) {
        int error = errno;
        if (error == ELOOP) {
            throw Error(Errc::unsafe_file, "refusing to open " + path + ": it is a symbolic link");
        }
        throw Error::from_errno(error, "open " + path);
    }
    // Check the file we actually opened, not whatever the path names now.
    struct stat st {};
    if (::fstat(region.fd_, &st) != 0) throw Error::from_errno(errno, "fstat " + path);
    if (!S_ISREG(st.st_mode)) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": not a regular file");
    }
    if (st.st_mode & S_IWOTH) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
        throw Error(Errc::unsafe_file,
                    "refusing to open " + path + ": it is world-writable (mode " + mode + ")");
    }
    uid_t me = ::geteuid();
    bool owner_ok = st.st_uid == me || st.st_uid == 0 ||
                    (policy.allowed_owner && *policy.allowed_owner == st.st_uid);
    if (!owner_ok) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": owned by uid " +
                                           std::to_string(st.st_uid) +
                                           ", not by us; allow that owner explicitly to share it");
    }
    region.map(static_cast<std::size_t>(st.st_size));
    return region;
}

bool Region::unlinked_or_replaced() const {
    struct stat mine {};
    if (::fstat(fd_, &mine) != 0) return true;
    if (mine.st_nlink == 0) return true;
    struct stat named {};
    if (::lstat(path_.c_str(), &named) != 0) return true;
    return named.st_dev != mine.st_dev || named.st_ino != mine.st_ino;
}

std::chrono::system_clock::time_point Region::change_time() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw Error::from_errno(errno, "fstat " + path_);
    auto since_epoch = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(since_epoch));
}

namespace {
struct flock byte_lock(std::uint64_t offset, short type) {
    struct flock lock {};
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = static_cast<off_t>(offset);
    lock.l_len = 1;
    lock.l_pid = 0;  // required to be 0 for OFD locks
    return lock;
}
}  // namespace

bool Region::try_lock(std::uint64_t offset, LockKind kind) {
    struct flock lock = byte_lock(offset, kind == LockKind::shared ? F_RDLCK : F_WRLCK);
    if (::fcntl(fd_, F_OFD_SETLK, &lock) == 0) return true;
    if (errno == EAGAIN || errno == EACCES) return false;
    throw Error::from_errno(errno, "lock byte " + std::to_string(offset) + " of " + path_);
}

void Region::unlock(std::uint64_t offset) {
    struct flock lock = byte_lock(offset, F_UNLCK);
    ::fcntl(fd_, F_OFD_SETLK, &lock);
}

bool Region::lock_held_by_other(std::uint64_t offset, LockKind kind) const {
    struct flock lock = byte_lock(offset, kind == LockKind::shared ? F_RDLCK : F_WRLCK);
    if (::fcntl(fd_, F_OFD_GETLK, &lock) != 0) {
        throw Error::from_errno(errno, "query lock of byte " + std::to_string(offset) + " of " + path_);
    }
    return lock.l_type != F_UNLCK;
}

bool Region::unlink_if_same_file() const {
    if (unlinked_or_replaced()) return false;
    return ::unlink(path_.c_str()) == 0;
}

bool unlink_path(const std::string& path) { return ::unlink(path.c_str()) == 0; }

}  // namespace shmchan::shm
