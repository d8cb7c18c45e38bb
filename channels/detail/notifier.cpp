// SPDX-License-Identifier: Apache-2.0
// Waking a channel's consumers, directly or through the gate that a slot's link names.
#include "channels/detail/notifier.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iterator>
#include <string>

#include "channels/detail/waiter.hpp"

namespace shmchan::detail {

namespace L = layout;

namespace {
// A generation no writer leaves behind (odd and past any count of links): map again next time.
constexpr std::uint64_t kRetryMap = ~std::uint64_t{0};
}  // namespace

void ConsumerNotifier::notify(bool priority) noexcept {
    for (std::uint32_t i = 0; i < slots_; ++i) {
        const L::GateLink& link = header_->gate_links[i];
        MappedGate& mapped = gates_[i];
        if (L::load_acquire(link.linked) != 0) {
            // Acquire: pairs with the link writer's release of an even generation (write_gate_link).
            const std::uint64_t generation = L::load_acquire(link.generation);
            if (generation != mapped.generation) map_gate(i, generation);
            if (mapped.gate) {
                notify_gate(mapped, priority);
                continue;
            }
        } else if (mapped.gate) {
            mapped = MappedGate{};  // unlinked: drop the gate's mapping (once per unlink)
        }
        // Rule 5, the waker's half: our position store is done; a syscall only if it sleeps.
        if (wake_if_sleeping(header_->consumers[i].wake.sleeping)) {
            L::counter_add(header_->producer_counters.wake_syscalls, std::uint64_t{1});
        }
    }
}

// Rule 5 with a gate's futex word: our bit, then the sleeping word.
void ConsumerNotifier::notify_gate(const MappedGate& mapped, bool priority) noexcept {
    L::GateHeader& gate = *mapped.gate;
    const std::uint64_t bit = std::uint64_t{1} << (mapped.index % 64);
    // seq_cst: a gate consumer that takes the bit (acquire exchange) sees our publish, and the
    // bit is ordered before our load of its sleeping word (rule 5).
    L::atomic(gate.ready[mapped.index / 64]).fetch_or(bit, std::memory_order_seq_cst);
    if (priority) L::atomic(gate.priority[mapped.index / 64]).fetch_or(bit, std::memory_order_seq_cst);
    if (wake_if_sleeping(gate.sleeping)) {
        L::atomic(gate.wake_syscalls).fetch_add(1, std::memory_order_relaxed);  // a counter
        L::counter_add(header_->producer_counters.wake_syscalls, std::uint64_t{1});
    }
}

// Maps the gate that slot `slot`'s link names (once per link generation). Every field comes from
// shared memory: the link is a seqlock (write_gate_link), so an odd generation (a link being
// written, or its writer died mid-write) maps nothing and one that changed while we copied is
// retried at the next notify; the name is validated, the gate file checked like a channel's. On
// any problem we notify the slot's own word instead (the gate then sees the data at its periodic
// rescan).
void ConsumerNotifier::map_gate(std::uint32_t slot, std::uint64_t generation) noexcept {
    MappedGate& mapped = gates_[slot];
    mapped = MappedGate{};
    mapped.generation = generation;
    if (generation % 2 != 0) return;
    const L::GateLink& link = header_->gate_links[slot];
    std::uint64_t words[L::kGateNameWords];
    for (std::size_t w = 0; w < std::size(words); ++w) words[w] = L::load_relaxed(link.gate_name[w]);
    const std::uint32_t index = L::load_relaxed(link.index);
    // Acquire fence: if the copy above read any byte of a newer link, the load below sees that
    // link's odd generation (its writer's release fence precedes those bytes).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (L::load_relaxed(link.generation) != generation) {
        mapped.generation = kRetryMap;
        return;
    }
    char name[sizeof words];
    std::memcpy(name, words, sizeof name);
    name[sizeof name - 1] = '\0';
    const std::string_view gate_name(name);
    if (gate_name.size() > L::kMaxGateNameLength || !shm::is_valid_name(gate_name)) return;
    try {
        auto region = std::make_unique<shm::Region>(
            shm::Region::open(shm::region_path(gate_name, L::kGateFilePrefix), policy_, /*writable=*/true));
        if (region->size() < L::kGateBytes) return;
        auto* gate = static_cast<L::GateHeader*>(region->data());
        // Acquire: the gate creator's ready mark (its identity before it).
        if (L::load_acquire(gate->abi_version) != L::kAbiVersion || L::load_relaxed(gate->magic) != L::kGateMagic) return;
        const std::uint32_t count = L::load_relaxed(gate->channel_count);
        if (count > L::kMaxGateChannels || index >= count) return;
        mapped.index = index;
        mapped.gate = gate;
        mapped.region = std::move(region);
    } catch (...) {  // no exception leaves the hot path: the slot's own word is woken instead
    }
}

// A seqlock over the name and index: the generation is odd while they change, even (and new) once
// they are complete; producers map a gate only for an even generation that did not change while
// they copied (map_gate).
void write_gate_link(L::ChannelHeader& header, std::uint32_t slot, std::string_view gate_name, std::uint32_t index) {
    L::GateLink& link = header.gate_links[slot];
    std::uint64_t generation = L::load_relaxed(link.generation);  // our own field
    generation += generation % 2 == 0 ? 1 : 2;                    // odd: being written
    L::store_relaxed(link.generation, generation);
    // Release fence: a producer that reads any byte stored below sees the odd generation after
    // its acquire fence.
    std::atomic_thread_fence(std::memory_order_release);
    std::uint64_t words[L::kGateNameWords] = {};
    std::memcpy(words, gate_name.data(), std::min(gate_name.size(), sizeof words - 1));
    for (std::size_t w = 0; w < std::size(words); ++w) L::store_relaxed(link.gate_name[w], words[w]);
    L::store_relaxed(link.index, index);
    // Release: the name and index above are complete for a producer that acquires the even
    // generation.
    L::store_release(link.generation, generation + 1);
    L::store_release(link.linked, 1u);
}

void clear_gate_link(L::ChannelHeader& header, std::uint32_t slot) {
    // Release: a producer that acquires 0 wakes the slot's own word from then on.
    L::store_release(header.gate_links[slot].linked, 0u);
}

}  // namespace shmchan::detail
