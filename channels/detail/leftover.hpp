// SPDX-License-Identifier: Apache-2.0
// Leftovers: a channel that no live process holds and whose stream did not end cleanly (a side
// died, was killed, or gave up before end of stream). ChannelOptions::on_leftover says whether
// attach() continues one (resume) or removes it and starts a fresh channel (fresh); this is the
// check and the removal of the second case, on a mapping that open_or_create has validated and
// holds kInUseLockByte shared on.
#pragma once

#include <optional>
#include <string>

#include "channels/layout.hpp"
#include "shm/region.hpp"

namespace shmchan::detail {

// If the channel mapped by `region` is a leftover, marks it removed and unlinks it (the remover's
// protocol of channel.cpp: kInUseLockByte held exclusively while the mark is stored and the name
// unlinked, so that a racing opener starts over on a fresh file), and says what was left (for a
// message: positions and which side died). A channel nobody ever attached to is not a leftover
// (it holds no data): kept. `busy`: it looks like a leftover, but another process holds it
// without holding a side (an opener deciding the same thing, or about to attach): the caller
// lets go of it and opens it again, bounded. Kept or busy, `region` holds kInUseLockByte shared.
struct LeftoverCheck {
    enum class Outcome { kept, discarded, busy } outcome = Outcome::kept;
    std::string what;  // discarded: what it held
};
LeftoverCheck discard_if_leftover(shm::Region& region);

}  // namespace shmchan::detail
