// SPDX-License-Identifier: Apache-2.0
#include "shm/region.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
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
            case Errc::type_mismatch: return "record type mismatch";
        }
        return "unknown shmchan error";
    }
};
}  // namespace

const std::error_category& shmchan_category() noexcept {
    static const Category category;
    return category;
}

std::string escaped(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (byte == '\\') {
            out += "\\\\";
        } else if (byte >= 0x20 && byte < 0x7f) {
            out += c;
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            out += hex;
        }
    }
    return out;
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
        throw Error(Errc::bad_name, "invalid channel name '" + escaped(name) +
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
        if (!temporary_path_.empty()) ::unlink(temporary_path_.c_str());
        fd_ = std::exchange(other.fd_, -1);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        writable_ = other.writable_;
        path_ = std::move(other.path_);
        temporary_path_ = std::exchange(other.temporary_path_, std::string());
    }
    return *this;
}

Region::~Region() {
    unmap();
    // A create_unnamed() file that never got its name: remove the temporary one.
    if (!temporary_path_.empty()) ::unlink(temporary_path_.c_str());
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

namespace {

// Moves a descriptor above the standard ones. A process that runs with descriptor 0, 1 or 2
// closed would otherwise get the channel file there, and its next read of standard input or
// write to standard output would go to the channel's bytes. Returns the new descriptor (the old
// one is closed), or -1 with errno set.
int above_standard_descriptors(int fd) {
    if (fd < 0 || fd > STDERR_FILENO) return fd;
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    int error = errno;
    ::close(fd);
    errno = error;
    return moved;
}

std::string directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string space_hint(int error) {
    if (error == ENOSPC) {
        return " (no free space or no free inodes in " + region_directory() + ")";
    }
    return {};
}

// A descriptor per attached channel: running out of them is its own cause, not the directory's.
std::string descriptor_hint(int error) {
    if (error == EMFILE) return " (this process reached its descriptor limit, RLIMIT_NOFILE: each attached channel holds one)";
    if (error == ENFILE) return " (the system's table of open files is full)";
    return {};
}

// A world-writable directory without the sticky bit lets any user rename or unlink our files and
// put their own under our names: refused. (With the sticky bit, as /tmp and /dev/shm have, only
// a file's owner can do that; a name another user planted is refused at open: no symlink is
// followed, no name is overwritten, and a file must be ours, root's or an allowed owner's.)
void check_directory(const std::string& path) {
    const std::string directory = directory_of(path);
    struct stat st {};
    if (::stat(directory.c_str(), &st) != 0) return;  // the open or create that follows reports it
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw Error(Errc::unsafe_file, "refusing channel files in " + directory + ": it is world-writable without the "
                                       "sticky bit (mode " + mode + "), so any user could replace them");
    }
}

Error create_failed(const std::string& path, int error) {
    if (error == EEXIST) return Error::from_errno(error, "create " + path);
    if (error == EMFILE || error == ENFILE) return Error::from_errno(error, "create " + path + descriptor_hint(error));
    return Error::from_errno(error, "create " + path +
                                        (error == ENOSPC ? space_hint(error)
                                                         : std::string(" (is the directory there and writable?)")));
}

}  // namespace

void Region::reserve_and_map(std::size_t size, mode_t mode) {
    // open(2) applies the umask; the mode asked for is what the file gets.
    if (::fchmod(fd_, mode & 0777) != 0) throw Error::from_errno(errno, "fchmod " + path_);
    // Reserve every page now: on tmpfs this allocates them, so a full /dev/shm fails here with
    // ENOSPC instead of with a SIGBUS at the first touch of a missing page.
    int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(size));
    if (rc != 0) {
        throw Error::from_errno(rc, "reserve " + std::to_string(size) + " bytes for " + path_ + space_hint(rc));
    }
    map(size);
}

Region Region::create(const std::string& path, std::size_t size, const AccessPolicy& policy,
                      std::uint64_t creating_lock_offset) {
    check_directory(path);
    Region region;
    region.path_ = path;
    region.writable_ = true;
    region.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        policy.mode & 0777);
    if (region.fd_ >= 0) region.fd_ = above_standard_descriptors(region.fd_);
    if (region.fd_ < 0) throw create_failed(path, errno);
    // From here on, any failure must remove the file we created, or it would look like a
    // half-made file to everybody else.
    try {
        if (!region.try_lock(creating_lock_offset, LockKind::exclusive)) {
            throw Error::from_errno(EAGAIN, "lock the creation mark of " + path);
        }
        region.reserve_and_map(size, policy.mode);
    } catch (...) {
        ::unlink(path.c_str());
        throw;
    }
    return region;
}

Region Region::create_unnamed(const std::string& path, std::size_t size, const AccessPolicy& policy) {
    check_directory(path);
    Region region;
    region.path_ = path;
    region.writable_ = true;
    const std::string directory = directory_of(path);
    // The file has no name until link_name(): nobody can open a half-made channel, and a
    // creator that dies or freezes leaves nothing behind under the name. O_TMPFILE gives an
    // unnamed file; where the file system lacks it, a temporary name outside the channel
    // namespace (a leading '.') that rename(RENAME_NOREPLACE) later turns into the real one.
    region.fd_ = ::open(directory.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, policy.mode & 0777);
    if (region.fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        std::random_device random;
        for (int attempt = 0; attempt < 100 && region.fd_ < 0; ++attempt) {
            char suffix[32];
            std::snprintf(suffix, sizeof suffix, ".%d.%08x", static_cast<int>(::getpid()),
                          static_cast<unsigned>(random()));
            std::string temporary = directory + "/." + path.substr(directory.size() + 1) + suffix;
            region.fd_ = ::open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                policy.mode & 0777);
            if (region.fd_ >= 0) region.temporary_path_ = temporary;
            else if (errno != EEXIST) break;
        }
    }
    if (region.fd_ >= 0) region.fd_ = above_standard_descriptors(region.fd_);
    if (region.fd_ < 0) throw create_failed(path, errno);
    // From here on, any failure must remove a temporary name (an unnamed file just vanishes).
    try {
        region.reserve_and_map(size, policy.mode);
    } catch (...) {
        if (!region.temporary_path_.empty()) ::unlink(region.temporary_path_.c_str());
        region.temporary_path_.clear();
        throw;
    }
    return region;
}

bool Region::link_name() {
    if (!temporary_path_.empty()) {
        if (::renameat2(AT_FDCWD, temporary_path_.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE) == 0) {
            temporary_path_.clear();
            return true;
        }
        int error = errno;
        if (error == EEXIST) return false;
        throw Error::from_errno(error, "name " + path_);
    }
    // linkat of an O_TMPFILE descriptor: AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the
    // /proc/self/fd path works for everyone. Neither replaces an existing name (EEXIST), so
    // the kernel decides which of two racing creators names the channel.
    if (::linkat(fd_, "", AT_FDCWD, path_.c_str(), AT_EMPTY_PATH) == 0) return true;
    if (errno == EEXIST) return false;
    std::string self = "/proc/self/fd/" + std::to_string(fd_);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path_.c_str(), AT_SYMLINK_FOLLOW) == 0) return true;
    int error = errno;
    if (error == EEXIST) return false;
    throw Error::from_errno(error, "name " + path_ + space_hint(error));
}

Region Region::open(const std::string& path, const AccessPolicy& policy, bool writable) {
    if (writable) check_directory(path);  // reading (inspect) where others may write is harmless
    Region region;
    region.path_ = path;
    region.writable_ = writable;
    // Look before opening: open(2) of a FIFO blocks, and opening a device can have effects. The
    // descriptor is checked again below (the name may change between the two calls).
    struct stat named {};
    if (::lstat(path.c_str(), &named) != 0) throw Error::from_errno(errno, "open " + path);
    if (S_ISLNK(named.st_mode)) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": it is a symbolic link");
    }
    if (!S_ISREG(named.st_mode)) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": not a regular file");
    }
    // O_NONBLOCK: should the name have become a FIFO since the lstat, open does not block.
    region.fd_ = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    region.fd_ = above_standard_descriptors(region.fd_);
    if (region.fd_ < 0) {
        int error = errno;
        if (error == ELOOP) {
            throw Error(Errc::unsafe_file, "refusing to open " + path + ": it is a symbolic link");
        }
        throw Error::from_errno(error, "open " + path + descriptor_hint(error));
    }
    // Check the file we actually opened, not whatever the path names now.
    struct stat st {};
    if (::fstat(region.fd_, &st) != 0) throw Error::from_errno(errno, "fstat " + path);
    if (!S_ISREG(st.st_mode)) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": not a regular file");
    }
    // A channel file has one name. A second hard link may be a file of somebody else's that a
    // user linked under a channel name: never write into it.
    if (writable && st.st_nlink > 1) {
        throw Error(Errc::unsafe_file, "refusing to open " + path + ": it has " + std::to_string(st.st_nlink) +
                                           " hard links (a channel file has one)");
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
