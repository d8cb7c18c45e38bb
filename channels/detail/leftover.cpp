// SPDX-License-Identifier: Apache-2.0
#include "channels/detail/leftover.hpp"

#include <algorithm>

namespace shmchan::detail {

namespace L = layout;

namespace {

// What the header says (relaxed loads, each field once): only a hint until we hold the channel
// alone, then the final values of the processes that left.
struct Leftover {
    bool candidate = false;  // not ended, and some side attached at some point
    std::string what;
};

Leftover read_leftover(const L::ChannelHeader& header) {
    Leftover out;
    if (L::load_relaxed(header.producer.end_of_stream) != 0) return out;  // ended cleanly
    const std::uint32_t slots =
        std::min<std::uint32_t>(L::load_relaxed(header.identity.consumer_slots), L::kMaxConsumers);
    const std::uint64_t producer_attaches = L::load_relaxed(header.producer_attachment.attach_count);
    const bool producer_detached = L::load_relaxed(header.producer_attachment.attached) == 0;
    std::uint64_t consumer_attaches = 0;
    bool consumer_died = false;
    const std::uint64_t published = L::load_relaxed(header.producer.published);
    std::uint64_t released = published;
    for (std::uint32_t i = 0; i < slots; ++i) {
        const L::ConsumerSlot& slot = header.consumers[i];
        const std::uint64_t attaches = L::load_relaxed(slot.attachment.attach_count);
        consumer_attaches += attaches;
        if (attaches != 0 && L::load_relaxed(slot.attachment.attached) != 0) consumer_died = true;
        released = std::min(released, L::load_relaxed(slot.position.released));
    }
    if (producer_attaches == 0 && consumer_attaches == 0) return out;  // never used: no data
    out.candidate = true;
    out.what = std::to_string(published - std::min(published, released)) + " of " + std::to_string(published) +
               " published segments unread; ";
    if (producer_attaches == 0) {
        out.what += "no producer ever attached";
    } else {
        out.what += producer_detached ? "the producer detached without ending the stream" : "the producer died";
    }
    if (consumer_attaches != 0) out.what += consumer_died ? ", a consumer died" : ", the consumer detached";
    return out;
}

bool some_side_held(const shm::Region& region, const L::ChannelHeader& header) {
    if (region.lock_held_by_other(L::kProducerLockByte, shm::LockKind::shared)) return true;
    const std::uint32_t slots =
        std::min<std::uint32_t>(L::load_relaxed(header.identity.consumer_slots), L::kMaxConsumers);
    for (std::uint32_t i = 0; i < slots; ++i) {
        if (region.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared)) return true;
    }
    return false;
}

}  // namespace

LeftoverCheck discard_if_leftover(shm::Region& region) {
    auto& header = *static_cast<L::ChannelHeader*>(region.data());
    // Exclusive on kInUseLockByte (converting our shared lock, on our own open file description)
    // succeeds only when no other handle holds the channel, and no creator: a live creator holds
    // it shared from before the file has its name. While we hold it, an opener waits in
    // lock_in_use and then sees the removal mark (or the unlinked name) and starts over.
    if (!region.try_lock(L::kInUseLockByte, shm::LockKind::exclusive)) {
        // Held by another process. A live side: not a leftover. Only openers: one of them (maybe
        // deciding as we do) will attach or remove it soon; look again.
        if (!some_side_held(region, header) && read_leftover(header).candidate) {
            return {LeftoverCheck::Outcome::busy, {}};
        }
        return {};
    }
    Leftover leftover = read_leftover(header);
    if (!leftover.candidate) {
        region.try_lock(L::kInUseLockByte, shm::LockKind::shared);  // a downgrade: never refused
        return {};
    }
    L::store_relaxed(header.control.removed, L::kRemovedMark);
    region.unlink_if_same_file();
    region.unlock(L::kInUseLockByte);
    return {LeftoverCheck::Outcome::discarded, std::move(leftover.what)};
}

}  // namespace shmchan::detail
