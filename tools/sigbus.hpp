// SPDX-License-Identifier: Apache-2.0
// SIGBUS in the tools: a channel file truncated under our mapping (tmpfs cannot be sealed against
// its owner) raises it at the next access of a vanished page. The tools say so in one line and
// exit 1 instead of dying silently.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstring>

namespace shmchan::tools {

namespace detail {
inline char sigbus_message[128];
inline std::size_t sigbus_message_length = 0;

extern "C" inline void on_sigbus(int) {
    // Only async-signal-safe calls here.
    (void)!::write(STDERR_FILENO, sigbus_message, sigbus_message_length);
    ::_exit(1);
}
}  // namespace detail

inline void report_sigbus_and_exit(const char* tool) {
    static const char text[] = ": a channel file was truncated while mapped (SIGBUS): channel corrupt\n";
    std::size_t tool_length = std::strlen(tool);
    if (tool_length + sizeof text > sizeof detail::sigbus_message) tool_length = 0;
    std::memcpy(detail::sigbus_message, tool, tool_length);
    std::memcpy(detail::sigbus_message + tool_length, text, sizeof text - 1);
    detail::sigbus_message_length = tool_length + sizeof text - 1;
    struct sigaction action {};
    action.sa_handler = detail::on_sigbus;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, nullptr);
}

}  // namespace shmchan::tools
