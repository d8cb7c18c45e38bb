// SPDX-License-Identifier: Apache-2.0
// Command-line conventions the tools share, on top of CLI11:
//   TOOL --version                 "TOOL (shmchan) X.Y.Z", exit 0
//   TOOL --help-all                the help of every command (help2man makes the man page of it)
//   TOOL frobnicate ...            "TOOL: unknown command 'frobnicate'; the commands are: a, b, c", exit 2
//   TOOL                           "TOOL: no command given; the commands are: a, b, c", exit 2
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "shmchan/version.hpp"

namespace shmchan::tools {

inline void add_standard_flags(CLI::App& app) {
    app.set_version_flag("--version", app.get_name() + " (shmchan) " SHMCHAN_VERSION_STRING,
                         "print the version and exit");
    app.set_help_all_flag("--help-all", "print the help of every command and exit");
}

// The commands of `app`, in the order they were added: "list, show, watch".
inline std::string command_list(const CLI::App& app) {
    std::string out;
    for (const CLI::App* command : app.get_subcommands({})) {
        if (!out.empty()) out += ", ";
        out += command->get_name();
    }
    return out;
}

// Checks the command word before CLI11 parses: the first argument that is not an option (nor the
// value of one of `options_with_value`) must name a command. Returns the message for stderr when
// it does not, or when there is none and no --help or --version either.
inline std::optional<std::string> command_word_error(const CLI::App& app, int argc, char** argv,
                                                     std::initializer_list<std::string_view> options_with_value = {}) {
    const std::string tool = app.get_name();
    for (int k = 1; k < argc; ++k) {
        std::string_view word = argv[k];
        if (word == "--") break;
        if (!word.empty() && word[0] == '-') {
            if (word == "--help" || word == "-h" || word == "--help-all" || word == "--version") return std::nullopt;
            for (std::string_view option : options_with_value) {
                if (word == option) ++k;  // its value is the next argument
            }
            continue;
        }
        for (const CLI::App* command : app.get_subcommands({})) {
            if (command->get_name() == word) return std::nullopt;
        }
        std::string shown;
        for (char c : word) shown += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "?";
        return tool + ": unknown command '" + shown + "'; the commands are: " + command_list(app) + " (" + tool +
               " --help)";
    }
    return tool + ": no command given; the commands are: " + command_list(app) + " (" + tool + " --help)";
}

}  // namespace shmchan::tools
