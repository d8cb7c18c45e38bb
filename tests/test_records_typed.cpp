// SPDX-License-Identifier: Apache-2.0
// Typed records across real processes: trivially copyable types, strings and a user codec
// (tests/records_support.hpp), with event and decode_error.
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include "records_support.hpp"

TEST_SUITE("records") {

// ---- 5. Typed records -------------------------------------------------------------------------------

TEST_CASE("typed records: trivially copyable, strings, a user codec; event and decode_error") {
    using recordtest::Bag;
    using recordtest::Trade;
    const std::string name = test::unique_name("rec-typed");
    auto options = records_options(kSmallSegment, kSmallCount);
    const Trade trade{77, 101.25, {'X', 'N', 'A', 'S'}};
    const std::string short_text = "hello, records";
    const std::string long_text(3 * kSmallSegment + 5, 'q');  // spans segments
    const std::string_view view_text = "a view";
    Bag bag{"bag", {}};
    for (int i = 0; i < 3000; ++i) bag.values.push_back(i * 7 - 1000);  // 12 KiB: spans
    const Bag small_bag{"", {1, 2, 3}};

    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        CHILD_EXPECT(writer.write_value(trade) == Status::ok);
        CHILD_EXPECT(writer.write_value(short_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(long_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(view_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(bag) == Status::ok);
        CHILD_EXPECT(writer.write_value(small_bag) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(5) == Status::ok);
        CHILD_EXPECT(writer.write_value(std::string("abc")) == Status::ok);  // not a Trade
        CHILD_EXPECT(writer.write_value(std::uint16_t{9}) == Status::ok);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    Trade got_trade{};
    REQUIRE(reader.read_value(got_trade) == Status::ok);
    CHECK(got_trade.id == trade.id);
    CHECK(got_trade.price == trade.price);
    CHECK(std::memcmp(got_trade.venue, trade.venue, sizeof trade.venue) == 0);
    std::string got_text;
    REQUIRE(reader.read_value(got_text) == Status::ok);
    CHECK(got_text == short_text);
    REQUIRE(reader.read_value(got_text) == Status::ok);
    CHECK(got_text == long_text);
    std::string_view got_view;
    REQUIRE(reader.read_value(got_view) == Status::ok);
    CHECK(got_view == view_text);
    Bag got_bag;
    REQUIRE(reader.read_value(got_bag) == Status::ok);
    CHECK(got_bag == bag);
    REQUIRE(reader.read_value(got_bag) == Status::ok);
    CHECK(got_bag == small_bag);
    CHECK(reader.read_value(got_trade) == Status::event);
    CHECK(reader.last().kind == RecordKind::barrier);
    CHECK(reader.last().checkpoint_id == 5);
    CHECK(reader.read_value(got_trade) == Status::decode_error);  // 3 bytes, not a Trade
    std::uint32_t wrong = 0;
    CHECK(reader.read_value(wrong) == Status::decode_error);      // 2 bytes, not 4
    CHECK(reader.read_value(got_trade) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
}

}  // TEST_SUITE
