// SPDX-License-Identifier: Apache-2.0
// Output helpers of shm-inspect: JSON strings, Prometheus label values and numbers, and the
// text-or-hex decision of `peek`. Header-only and free of channel knowledge, so that
// tests/test_inspect.cpp checks them directly.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

namespace shmchan::inspect_format {

// Length of the valid UTF-8 sequence starting at text[i] (1..4), or 0 if the bytes there are
// not valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF are invalid).
// `truncated_ok`: a sequence cut short by the end of `text` counts as valid (a view that stops
// in the middle of a character).
inline std::size_t utf8_sequence(std::string_view text, std::size_t i, bool truncated_ok = false,
                                 std::uint32_t* code_point = nullptr, bool* cut = nullptr) {
    if (cut) *cut = false;
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char b0 = byte(i);
    if (b0 < 0x80) {
        if (code_point) *code_point = b0;
        return 1;
    }
    std::size_t length;
    std::uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        length = 2;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        length = 3;
        cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        length = 4;
        cp = b0 & 0x07;
    } else {
        return 0;
    }
    for (std::size_t k = 1; k < length; ++k) {
        if (i + k >= text.size()) {
            if (!truncated_ok) return 0;
            if (cut) *cut = true;
            return text.size() - i;
        }
        unsigned char b = byte(i + k);
        if ((b & 0xC0) != 0x80) return 0;
        // Second-byte ranges that exclude overlong forms, surrogates and > U+10FFFF.
        if (k == 1) {
            if (b0 == 0xE0 && b < 0xA0) return 0;
            if (b0 == 0xED && b > 0x9F) return 0;
            if (b0 == 0xF0 && b < 0x90) return 0;
            if (b0 == 0xF4 && b > 0x8F) return 0;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    if (code_point) *code_point = cp;
    return length;
}

// A JSON string literal (with the quotes). Control characters become \u00XX escapes; bytes that
// are not valid UTF-8 become U+FFFD, so the output is always valid JSON.
inline std::string json_string(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (std::size_t i = 0; i < text.size();) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        switch (c) {
            case '"': out += "\\\""; ++i; continue;
            case '\\': out += "\\\\"; ++i; continue;
            case '\n': out += "\\n"; ++i; continue;
            case '\r': out += "\\r"; ++i; continue;
            case '\t': out += "\\t"; ++i; continue;
            case '\b': out += "\\b"; ++i; continue;
            case '\f': out += "\\f"; ++i; continue;
            default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
            out += buffer;
            ++i;
            continue;
        }
        std::size_t length = utf8_sequence(text, i);
        if (length == 0) {
            out += "\\ufffd";
            ++i;
            continue;
        }
        out.append(text.substr(i, length));
        i += length;
    }
    out += '"';
    return out;
}

// A Prometheus label value, without the quotes: backslash, double quote and newline escaped as
// the text exposition format asks.
inline std::string prometheus_label_value(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

// A floating-point number in its shortest exact form (valid JSON and Prometheus); non-finite
// values become "null" for JSON (`for_json`) or Prometheus' NaN / +Inf / -Inf.
inline std::string number(double value, bool for_json) {
    if (std::isnan(value)) return for_json ? "null" : "NaN";
    if (std::isinf(value)) return for_json ? "null" : (value > 0 ? "+Inf" : "-Inf");
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

// Whether bytes read best as text: valid UTF-8 with no control characters other than tab,
// newline and carriage return (so printing them cannot drive a terminal), and no C1 controls.
// `truncated`: the bytes are a prefix, so a character cut at the end is fine.
inline bool is_text(std::span<const std::byte> bytes, bool truncated = false) {
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (std::size_t i = 0; i < text.size();) {
        std::uint32_t cp = 0;
        bool cut = false;
        std::size_t length = utf8_sequence(text, i, truncated, &cp, &cut);
        if (length == 0) return false;
        if (cut) return true;  // a character cut short at the end of a prefix
        if (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') return false;
        if (cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) return false;
        i += length;
    }
    return true;
}

// A classic hex dump: offset, 16 bytes in two groups of 8, printable ASCII between bars.
inline std::string hex_dump(std::span<const std::byte> bytes, std::uint64_t base_offset = 0) {
    std::string out;
    char buffer[96];
    for (std::size_t line = 0; line < bytes.size(); line += 16) {
        int n = std::snprintf(buffer, sizeof buffer, "%08llx ", static_cast<unsigned long long>(base_offset + line));
        out.append(buffer, static_cast<std::size_t>(n));
        for (std::size_t k = 0; k < 16; ++k) {
            if (k == 8) out += ' ';
            if (line + k < bytes.size()) {
                n = std::snprintf(buffer, sizeof buffer, " %02x", static_cast<unsigned>(bytes[line + k]));
                out.append(buffer, static_cast<std::size_t>(n));
            } else {
                out += "   ";
            }
        }
        out += "  |";
        for (std::size_t k = 0; k < 16 && line + k < bytes.size(); ++k) {
            unsigned char c = static_cast<unsigned char>(bytes[line + k]);
            out += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : '.';
        }
        out += "|\n";
    }
    return out;
}

}  // namespace shmchan::inspect_format
