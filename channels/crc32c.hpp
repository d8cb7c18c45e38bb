// SPDX-License-Identifier: Apache-2.0
// CRC-32C (Castagnoli), the checksum of a segment's committed payload when a channel asks for it.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shmchan {

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

}  // namespace shmchan
