// SPDX-License-Identifier: Apache-2.0
// Named shared-memory regions: files in a tmpfs directory, mapped MAP_SHARED.
//
// Location: NAME lives in `$SHMCHAN_DIR/shmchan-NAME` when SHMCHAN_DIR is set, otherwise in
// `/dev/shm/shmchan-NAME` (the file shm_open would make). We use open(2) on the path rather than
// shm_open(3) or Boost.Interprocess's shared_memory_object because we need what neither offers:
// a directory of our choosing (tests, containers), O_NOFOLLOW, checks on the open descriptor
// (fstat, not the path), posix_fallocate at creation, and byte-range locks on the file for
// liveness. Boost.Interprocess's mapped_region would only wrap the mmap call.
//
// This layer knows nothing of channels: a region is a file of a fixed size, mapped read-write or
// read-only, with byte-range locks that the layer above gives a meaning.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shmchan::shm {

inline constexpr std::size_t kMaxNameLength = 200;

// The directory that holds region files: $SHMCHAN_DIR or /dev/shm.
std::string region_directory();

// Throws Error(Errc::bad_name) unless the name is 1..200 characters of [A-Za-z0-9._-] and is not
// "." or ".." (a name never contains '/').
void validate_name(std::string_view name);
bool is_valid_name(std::string_view name) noexcept;

// region_directory() + "/" + prefix + name (name validated). The prefix is the caller's: this
// layer does not know what the files hold (channels/layout.hpp names the channel and gate ones).
std::string region_path(std::string_view name, std::string_view prefix);

struct AccessPolicy {
    mode_t mode = 0600;                  // mode of a file we create (umask is not applied)
    std::optional<uid_t> allowed_owner;  // open also accepts files owned by this user
};

// Byte-range locks that die with their holder.
//
// We use open-file-description locks (F_OFD_SETLK). The kernel drops them when the last
// descriptor of the open file description closes, which happens when the holder exits or is
// killed (a zombie has already closed its files), and it keys them on the file's inode, not on a
// pid, so they are sound across pid reuse and across pid namespaces that share the directory.
// Unlike classic POSIX record locks they are not dropped when the process closes some other
// descriptor of the file, and two opens in one process (two handles in two threads) conflict as
// two processes would. The caveat: a child forked without exec inherits the descriptor and
// keeps the lock alive; our descriptors are O_CLOEXEC so exec drops them.
enum class LockKind { shared, exclusive };

class Region {
public:
    Region() = default;
    Region(Region&& other) noexcept;
    Region& operator=(Region&& other) noexcept;
    Region(const Region&) = delete;
    Region& operator=(const Region&) = delete;
    ~Region();

    // Creates the file exclusively (EEXIST -> Error with that code), reserves `size` bytes with
    // posix_fallocate (ENOSPC is a clear error, never a SIGBUS later) and maps it read-write.
    // Before the file gets its size, the caller's `creating_lock_offset` byte is locked
    // exclusively, so that an observer can tell a live creator from a dead one.
    static Region create(const std::string& path, std::size_t size, const AccessPolicy& policy,
                         std::uint64_t creating_lock_offset);

    // Creates a file for `path` that has no name yet (O_TMPFILE, or a temporary name outside the
    // channel namespace where the file system lacks it), reserves `size` bytes and maps it
    // read-write. Nobody can open it until link_name() succeeds, so a creator that dies or
    // stops before then leaves nothing under the name.
    static Region create_unnamed(const std::string& path, std::size_t size, const AccessPolicy& policy);
    // Gives a create_unnamed() file its name path(). False if the name exists already (another
    // creator won the race: the kernel decides, exactly one wins); the file is then unchanged
    // and still unnamed. Throws on any other error.
    bool link_name();

    // Opens an existing file (ENOENT -> Error with that code) after checking the name (lstat:
    // no symlink, nothing but a regular file is opened, so a FIFO cannot block us) and the open
    // descriptor: a regular file, not world-writable, owned by us, root or the allowed owner,
    // and, when `writable`, with one hard link. Maps min(file size, map_limit) bytes; `writable` picks the protection.
    // The file may still be growing (its creator between create and fallocate): size() can be 0.
    static Region open(const std::string& path, const AccessPolicy& policy, bool writable);

    // Re-reads the file size and maps it whole (used once the opener knows the creator is done).
    void remap_whole_file();

    void* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    int fd() const noexcept { return fd_; }
    const std::string& path() const noexcept { return path_; }
    bool writable() const noexcept { return writable_; }

    // Current size of the file (fstat on the descriptor).
    std::size_t file_size() const;
    // True when the file behind our descriptor is no longer linked at path() (unlinked, or the
    // name now points to a different file).
    bool unlinked_or_replaced() const;
    // Modification time of the file, for telling a fresh half-created file from an old one.
    std::chrono::system_clock::time_point change_time() const;

    // Non-blocking: true if taken. A held conflicting lock gives false; other errors throw.
    bool try_lock(std::uint64_t offset, LockKind kind);
    void unlock(std::uint64_t offset);
    // True when some other open file description holds a lock on that byte that conflicts with
    // `kind` (shared: is anyone writing; exclusive: is anyone holding it at all).
    bool lock_held_by_other(std::uint64_t offset, LockKind kind) const;

    // Unlinks path() if it still names our file (same device and inode). Returns true if it did.
    bool unlink_if_same_file() const;

private:
    void map(std::size_t size);
    void unmap() noexcept;
    void reserve_and_map(std::size_t size, mode_t mode);  // fchmod, posix_fallocate, map

    int fd_ = -1;
    void* data_ = nullptr;
    std::size_t size_ = 0;
    bool writable_ = false;
    std::string path_;
    std::string temporary_path_;  // create_unnamed() without O_TMPFILE: the name until link_name()
};

// Every descriptor a Region opens is above 2: a process started with standard input or output
// closed never gets a channel file as descriptor 0, 1 or 2.

// Removes a file by path (no checks). Returns false if it did not exist.
bool unlink_path(const std::string& path);

}  // namespace shmchan::shm
