// SPDX-License-Identifier: Apache-2.0
// The framing refusal mark (layout.hpp Control::framing_refusals): an opener that asked for the
// other framing (raw bytes / records) than the channel carries is refused with an error; when no
// live process holds the side it asked for, it first leaves this mark, so that the peer waiting
// for that side stops waiting (its wait returns Status::incompatible) instead of waiting forever.
#pragma once

#include <cstdint>

#include "channels/layout.hpp"
#include "shm/region.hpp"

namespace shmchan::detail {

// bit 8 of Control::refused_framing: the refused opener asked to be the producer.
inline constexpr std::uint32_t kRefusedAsProducer = 0x100;

// On a validated mapping held with kInUseLockByte shared: if no live process holds the side the
// opener asked for (the producer's lock, or every consumer slot's), stores the framing it asked
// for and bumps the count. Waiters see it at their next liveness check.
void mark_framing_refusal(shm::Region& region, bool as_producer, std::uint32_t asked_framing) noexcept;

}  // namespace shmchan::detail
