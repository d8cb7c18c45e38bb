// SPDX-License-Identifier: Apache-2.0
// shmchan::Error: the one exception type of setup calls (create, open, attach, remove).
//
// The hot path never throws; it returns a status. Setup failures carry a message that names the
// object and the cause, and an error code (errno where the OS gave one, otherwise one of ours).
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace shmchan {

// Causes that are not an errno. Values start at 1000 so they never collide with errno values.
enum class Errc : int {
    bad_name = 1000,          // a channel name with characters outside [A-Za-z0-9._-], or too long
    bad_magic,                // the file does not start with our magic: not a shmchan channel
    bad_version,              // an ABI version this build does not understand
    corrupt,                  // a header field is out of its valid range or disagrees with the file
    not_ready,                // the creator did not finish initializing within the bound
    geometry_mismatch,        // an explicit segment size or count differs from the existing channel
    framing_mismatch,         // raw bytes vs records
    side_taken,               // a live producer (or consumer) is already attached
    stream_ended,             // a producer attaching to a channel whose stream has ended
    unsafe_file,              // world-writable, foreign owner, not a regular file, symlink
    bad_options,              // options out of range
    type_mismatch,            // the declared record type differs from the existing channel's
};

const std::error_category& shmchan_category() noexcept;

// `text` safe to print on a terminal, for messages that echo a name the user gave: every byte
// outside printable ASCII (control characters, escape sequences) becomes \xNN, and a backslash
// becomes \\.
std::string escaped(std::string_view text);

inline std::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), shmchan_category()};
}

class Error : public std::runtime_error {
public:
    Error(std::error_code code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    Error(Errc code, const std::string& message) : Error(make_error_code(code), message) {}

    // An errno-carrying error; the message gets ": strerror(errno)" appended.
    static Error from_errno(int errno_value, const std::string& what);

    const std::error_code& code() const noexcept { return code_; }

private:
    std::error_code code_;
};

}  // namespace shmchan

template <>
struct std::is_error_code_enum<shmchan::Errc> : std::true_type {};
