// SPDX-License-Identifier: Apache-2.0
// ChannelOptions::on_leftover across real processes: a channel that no live process holds and
// whose stream did not end cleanly is continued (resume, the default) or removed and made anew
// (fresh); a channel held by a live process, or whose stream ended cleanly, is never a leftover.
#include "channel_support.hpp"

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

ChannelOptions with(OnLeftover mode) {
    ChannelOptions options = geometry(4096, 4);
    options.on_leftover = mode;
    return options;
}

// A child producer publishes segments first .. first + count - 1 (one number each), then either
// ends the stream or dies without ending it.
void produce_in_child(const std::string& name, std::uint64_t first, int count, bool end) {
    Child child([=] {
        auto producer = Producer::attach(name, geometry(4096, 4));
        for (int i = 0; i < count; ++i) {
            WritableSegment out;
            if (producer.acquire_for(out, 20s) != Status::ok) return 1;
            std::uint64_t value = first + static_cast<std::uint64_t>(i);
            std::memcpy(out.payload.data(), &value, sizeof value);
            if (producer.publish(sizeof value) != Status::ok) return 2;
        }
        if (end && producer.end_stream() != Status::ok) return 3;
        ::_exit(0);  // no clean detach: a producer that was killed
        return 0;
    });
    REQUIRE(child.exit_code(30s) == 0);
}

std::vector<std::uint64_t> drain(Consumer& consumer) {
    std::vector<std::uint64_t> numbers;
    ReadableSegment in;
    while (consumer.try_read(in) == Status::ok) {
        std::uint64_t value = 0;
        if (in.payload.size() == sizeof value) std::memcpy(&value, in.payload.data(), sizeof value);
        numbers.push_back(value);
    }
    return numbers;
}

}  // namespace

TEST_SUITE("leftover") {

TEST_CASE("a dead producer's unread segments: resume continues them, fresh starts anew") {
    const std::string name = unique_name("leftover-producer");
    produce_in_child(name, 100, 3, /*end=*/false);

    SUBCASE("resume (the default) reads them") {
        auto consumer = Consumer::attach(name, ChannelOptions{});
        CHECK(consumer.discarded_leftover().empty());
        CHECK(drain(consumer) == std::vector<std::uint64_t>{100, 101, 102});
    }
    SUBCASE("fresh removes them and says so") {
        auto consumer = Consumer::attach(name, with(OnLeftover::fresh));
        CHECK_MESSAGE(consumer.discarded_leftover().find("3 of 3 published segments unread") != std::string::npos,
                      consumer.discarded_leftover());
        CHECK(consumer.discarded_leftover().find("the producer died") != std::string::npos);
        CHECK(drain(consumer).empty());
        produce_in_child(name, 7, 1, /*end=*/true);  // the fresh channel works
        CHECK(drain(consumer) == std::vector<std::uint64_t>{7});
        ReadableSegment in;
        CHECK(consumer.read_for(in, 20s) == Status::end_of_stream);
    }
    SUBCASE("fresh, from the producer side, with another geometry") {
        ChannelOptions options = with(OnLeftover::fresh);
        options.segment_count = 8;  // the leftover has 4: replaced, so no geometry mismatch
        auto producer = Producer::attach(name, options);
        CHECK_FALSE(producer.discarded_leftover().empty());
        CHECK(producer.segment_count() == 8);
        CHECK(producer.info().published == 0);
    }
    remove_channel(name, true);
}

TEST_CASE("a dead consumer's leftover: fresh replaces it for the next producer") {
    const std::string name = unique_name("leftover-consumer");
    Child consumer_child([name] {
        auto consumer = Consumer::attach(name, geometry(4096, 4));
        ::_exit(0);  // no clean detach: a consumer that was killed
        return 0;
    });
    REQUIRE(consumer_child.exit_code(30s) == 0);
    auto producer = Producer::attach(name, with(OnLeftover::fresh));
    CHECK(producer.discarded_leftover().find("a consumer died") != std::string::npos);
    CHECK(producer.info().consumer.attach_count == 0);  // nobody to report as gone
    remove_channel(name, true);
}

TEST_CASE("never leftovers: a channel a live process holds, a stream that ended cleanly") {
    const std::string name = unique_name("leftover-not");
    SUBCASE("a live consumer holds it, its producer died") {
        auto consumer = Consumer::attach(name, geometry(4096, 4));
        produce_in_child(name, 1, 2, /*end=*/false);
        auto producer = Producer::attach(name, with(OnLeftover::fresh));  // the replacement
        CHECK(producer.discarded_leftover().empty());
        CHECK(drain(consumer) == std::vector<std::uint64_t>{1, 2});
    }
    SUBCASE("the stream ended cleanly and was not read") {
        produce_in_child(name, 5, 2, /*end=*/true);
        auto consumer = Consumer::attach(name, with(OnLeftover::fresh));
        CHECK(consumer.discarded_leftover().empty());
        CHECK(drain(consumer) == std::vector<std::uint64_t>{5, 6});
    }
    remove_channel(name, true);
}

TEST_CASE("openers racing on a leftover all end up on one fresh channel") {
    const std::string name = unique_name("leftover-race");
    produce_in_child(name, 1, 3, /*end=*/false);
    SharedBlock<Barrier> start;
    SharedBlock<std::atomic<int>> discarded;
    Child consumer_side([name, &start, &discarded] {
        start->arrive_and_wait(2);
        auto consumer = Consumer::attach(name, with(OnLeftover::fresh));
        if (!consumer.discarded_leftover().empty()) discarded->fetch_add(1);
        ReadableSegment in;
        std::vector<std::uint64_t> numbers;
        Status status;
        while ((status = consumer.read_for(in, 20s)) == Status::ok) {
            std::uint64_t value = 0;
            std::memcpy(&value, in.payload.data(), sizeof value);
            numbers.push_back(value);
        }
        CHILD_EXPECT(status == Status::end_of_stream);
        CHILD_EXPECT(numbers == (std::vector<std::uint64_t>{50, 51}));
        return 0;
    });
    Child producer_side([name, &start, &discarded] {
        start->arrive_and_wait(2);
        auto producer = Producer::attach(name, with(OnLeftover::fresh));
        if (!producer.discarded_leftover().empty()) discarded->fetch_add(1);
        for (std::uint64_t value : {50, 51}) {
            WritableSegment out;
            CHILD_EXPECT(producer.acquire_for(out, 20s) == Status::ok);
            std::memcpy(out.payload.data(), &value, sizeof value);
            CHILD_EXPECT(producer.publish(sizeof value) == Status::ok);
        }
        CHILD_EXPECT(producer.end_stream() == Status::ok);
        return 0;
    });
    CHECK(consumer_side.exit_code(60s) == 0);
    CHECK(producer_side.exit_code(60s) == 0);
    CHECK(discarded->load() == 1);  // exactly one of them removed the leftover
    remove_channel(name, true);
}

}  // TEST_SUITE("leftover")
