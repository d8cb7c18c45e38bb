// SPDX-License-Identifier: Apache-2.0
// Waking a channel's consumers (layout.hpp rule 5) and the gate links that redirect the wake.
//
// After a publish, a flush or the end of the stream the producer wakes each consumer slot's
// sleeper. A slot whose consumer is a gate (channels/topology.hpp) carries a gate link: the
// producer then sets the channel's bit in the gate's ready words and wakes the gate's one sleeper
// instead. The consumer side writes its slot's link (write_gate_link); the producer maps the gate
// it names, once per link generation (ConsumerNotifier).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "channels/layout.hpp"
#include "shm/region.hpp"

namespace shmchan::detail {

class ConsumerNotifier {
public:
    // `mode` and `allowed_owner`: the access policy for the gate files that links name.
    ConsumerNotifier(layout::ChannelHeader& header, std::uint32_t consumer_slots, mode_t mode,
                     std::optional<uid_t> allowed_owner) noexcept
        : header_(&header), slots_(consumer_slots), policy_{mode, allowed_owner} {}

    // Wakes every slot's consumer if it sleeps (a syscall only then), or sets our bit in the gate
    // that consumes the slot and wakes the gate. `priority`: a priority event is announced, so the
    // gate's priority word gets the bit too. Never throws.
    void notify(bool priority = false) noexcept;

private:
    // Producer: a gate file mapped because a consumer slot's link names it.
    struct MappedGate {
        std::unique_ptr<shm::Region> region;
        layout::GateHeader* gate = nullptr;  // null: not mapped (no link, or it failed validation)
        std::uint32_t index = 0;             // the channel's bit in the gate
        std::uint64_t generation = 0;        // of the link it was mapped for (links start at 2)
    };
    void map_gate(std::uint32_t slot, std::uint64_t generation) noexcept;
    void notify_gate(const MappedGate& mapped, bool priority) noexcept;

    layout::ChannelHeader* header_;
    std::uint32_t slots_;
    shm::AccessPolicy policy_;
    std::array<MappedGate, layout::kMaxConsumers> gates_;
};

// Consumer side, holding slot `slot`'s lock (the link's one writer): points producers at gate
// `gate_name`, bit `index`; clears the link.
void write_gate_link(layout::ChannelHeader& header, std::uint32_t slot, std::string_view gate_name, std::uint32_t index);
void clear_gate_link(layout::ChannelHeader& header, std::uint32_t slot);

}  // namespace shmchan::detail
