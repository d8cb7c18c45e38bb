// SPDX-License-Identifier: Apache-2.0
#include "channels/crc32c.hpp"

#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace shmchan {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78u;  // reflected Castagnoli

constexpr std::array<std::uint32_t, 256> make_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t crc = i;
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? kPolynomial : 0);
        table[i] = crc;
    }
    return table;
}
constexpr auto kTable = make_table();

std::uint32_t crc32c_table(const unsigned char* bytes, std::size_t size, std::uint32_t crc) noexcept {
    for (std::size_t i = 0; i < size; ++i) crc = kTable[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hardware(const unsigned char* bytes, std::size_t size,
                                                                std::uint32_t crc) noexcept {
    std::uint64_t crc64 = crc;
    while (size >= 8) {
        std::uint64_t word;
        std::memcpy(&word, bytes, 8);
        crc64 = _mm_crc32_u64(crc64, word);
        bytes += 8;
        size -= 8;
    }
    std::uint32_t crc32 = static_cast<std::uint32_t>(crc64);
    while (size > 0) {
        crc32 = _mm_crc32_u8(crc32, *bytes++);
        --size;
    }
    return crc32;
}

const bool kHasSse42 = __builtin_cpu_supports("sse4.2");

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) noexcept {
    auto* bytes = static_cast<const unsigned char*>(data);
    crc = ~crc;
    crc = kHasSse42 ? crc32c_hardware(bytes, size, crc) : crc32c_table(bytes, size, crc);
    return ~crc;
}

}  // namespace shmchan
