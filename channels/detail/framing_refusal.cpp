// SPDX-License-Identifier: Apache-2.0
#include "channels/detail/framing_refusal.hpp"

#include <algorithm>


namespace shmchan::detail {

namespace L = layout;

void mark_framing_refusal(shm::Region& region, bool as_producer, std::uint32_t asked_framing) noexcept {
    try {
        auto& header = *static_cast<L::ChannelHeader*>(region.data());
        const std::uint32_t slots =
            std::clamp<std::uint32_t>(L::load_relaxed(header.identity.consumer_slots), 1, L::kMaxConsumers);
        if (as_producer) {
            if (region.lock_held_by_other(L::kProducerLockByte, shm::LockKind::shared)) return;  // a live producer
        } else {
            bool free_slot = false;
            for (std::uint32_t i = 0; i < slots && !free_slot; ++i) {
                free_slot = !region.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared);
            }
            if (!free_slot) return;  // every slot has a live consumer: nobody waits for us
        }
        L::store_relaxed(header.control.refused_framing, asked_framing | (as_producer ? kRefusedAsProducer : 0u));
        // Release: a waiter that acquires the new count sees the framing stored above. It looks
        // at its next liveness check (the backstop of its wait), so no wake is needed.
        L::atomic(header.control.framing_refusals).fetch_add(1u, std::memory_order_release);
    } catch (...) {  // a lock query that failed: no mark (the refused opener still gets its error)
    }
}

}  // namespace shmchan::detail
