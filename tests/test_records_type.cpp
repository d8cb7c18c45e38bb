// SPDX-License-Identifier: Apache-2.0
// Declared record types across real processes: the type a channel was created with
// (ChannelOptions::record_type, layout.hpp RecordType), checked at attach and by the typed calls
// of a type tied to a name (record_type_name). Two types of one size are the case that a size
// check alone cannot catch.
#include "records_support.hpp"

namespace typetest {
// Two trivially copyable types of the same size whose bytes mean different things.
struct Price {
    std::int64_t id;
    double price;
};
struct Quote {
    double bid;
    std::int64_t size;
};
struct Unnamed {
    std::int64_t a;
    std::int64_t b;
};
static_assert(sizeof(Price) == sizeof(Quote) && sizeof(Price) == sizeof(Unnamed));
}  // namespace typetest

template <>
struct shmchan::record_type_name<typetest::Price> {
    static constexpr std::string_view value = "price.v1";
};
template <>
struct shmchan::record_type_name<typetest::Quote> {
    static constexpr std::string_view value = "quote.v1";
};

namespace {

using shmchan::Errc;
using typetest::Price;
using typetest::Quote;
using typetest::Unnamed;

ChannelOptions typed_options(const std::string& type) {
    ChannelOptions options = recordtest::records_options(recordtest::kSmallSegment, recordtest::kSmallCount);
    options.record_type = type;
    return options;
}

// A child that creates channel `name` as a writer with `options`, writes `count` values of a
// type without a name (never checked) and ends the stream.
int write_unnamed(const std::string& name, const ChannelOptions& options, int count) {
    auto writer = RecordWriter::attach(name, options);
    for (int i = 0; i < count; ++i) CHILD_EXPECT(writer.write_value(Unnamed{i, i}) == Status::ok);
    CHILD_EXPECT(writer.end_stream() == Status::ok);
    return 0;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_SUITE("records") {

TEST_CASE("record type: a different declaration is refused at attach, naming both types") {
    const std::string name = test::unique_name("rtype-mismatch");
    test::Child writer([&] { return write_unnamed(name, typed_options("a.v1"), 1); });
    REQUIRE(writer.exit_code() == 0);
    SHMCHAN_CHECK_THROWS_CODE(RecordReader::attach(name, typed_options("b.v1")), Errc::type_mismatch);
    try {
        (void)RecordReader::attach(name, typed_options("b.v1"));
    } catch (const shmchan::Error& error) {
        CHECK_MESSAGE(contains(error.what(), "'a.v1'"), error.what());
        CHECK_MESSAGE(contains(error.what(), "'b.v1'"), error.what());
    }
    // attach_typed declares record_type_name<T>: refused the same way.
    SHMCHAN_CHECK_THROWS_CODE(RecordReader::attach_typed<Quote>(name, typed_options("")), Errc::type_mismatch);
    // The refused opener left the channel as it was: the right declaration reads it.
    auto reader = RecordReader::attach(name, typed_options("a.v1"));
    Record record;
    CHECK(reader.read(record) == Status::ok);

    // Reader first, writer second: the writer is refused too.
    const std::string other = test::unique_name("rtype-mismatch2");
    auto first = RecordReader::attach(other, typed_options("a.v1"));
    test::Child late_writer([&] {
        auto code = test::error_of([&] { (void)RecordWriter::attach(other, typed_options("b.v1")); });
        CHILD_EXPECT(code && *code == Errc::type_mismatch);
        return 0;
    });
    CHECK(late_writer.exit_code() == 0);
}

TEST_CASE("record type: an opener that declares none adopts it; info and inspect show it") {
    const std::string name = test::unique_name("rtype-adopt");
    test::Child writer([&] {
        auto w = RecordWriter::attach_typed<Price>(name, typed_options(""));
        CHILD_EXPECT(w.producer().record_type() == "price.v1");
        for (int i = 0; i < 3; ++i) CHILD_EXPECT(w.write_value(Price{i, i * 0.5}) == Status::ok);
        CHILD_EXPECT(w.end_stream() == Status::ok);
        return 0;
    });
    REQUIRE(writer.exit_code() == 0);
    CHECK(shmchan::inspect(name).record_type == "price.v1");
    auto reader = RecordReader::attach(name, typed_options(""));
    CHECK(reader.consumer().record_type() == "price.v1");
    CHECK(reader.consumer().info().record_type == "price.v1");
    Price got{};
    for (int i = 0; i < 3; ++i) {
        REQUIRE(reader.read_value(got) == Status::ok);
        CHECK(got.id == i);
    }
    CHECK(reader.read_value(got) == Status::end_of_stream);
}

TEST_CASE("record type: a value of a type tied to another name, same size, is refused whole") {
    const std::string name = test::unique_name("rtype-value");
    test::Child writer([&] {
        auto w = RecordWriter::attach_typed<Price>(name, typed_options(""));
        // A Quote is a Price's size: only the declared names tell them apart.
        CHILD_EXPECT(w.write_value(Quote{1.0, 2}) == Status::invalid_call);
        CHILD_EXPECT(contains(w.last_error(), "'price.v1'") && contains(w.last_error(), "'quote.v1'"));
        const Quote quotes[2] = {{1.0, 2}, {3.0, 4}};
        std::size_t written = 7;
        CHILD_EXPECT(w.write_values(std::span<const Quote>(quotes), written) == Status::invalid_call);
        CHILD_EXPECT(written == 0);
        CHILD_EXPECT(w.write_value(Price{10, 1.25}) == Status::ok);
        CHILD_EXPECT(w.write_value(Price{11, 2.5}) == Status::ok);
        CHILD_EXPECT(w.write_value(Unnamed{12, 13}) == Status::ok);  // no name: not checked
        CHILD_EXPECT(w.end_stream() == Status::ok);
        return 0;
    });
    REQUIRE(writer.exit_code() == 0);
    auto reader = RecordReader::attach(name, typed_options(""));
    Quote quote{};
    CHECK(reader.read_value(quote) == Status::decode_error);
    CHECK_MESSAGE(contains(reader.last_error(), "'price.v1'"), reader.last_error());
    CHECK_MESSAGE(contains(reader.last_error(), "'quote.v1'"), reader.last_error());
    Quote quotes[4]{};
    std::size_t got = 9;
    CHECK(reader.read_values(std::span<Quote>(quotes), got) == Status::decode_error);
    CHECK(got == 0);
    // Nothing was consumed by the refusals: the first record is still the first Price.
    Price price{};
    REQUIRE(reader.read_value(price) == Status::ok);
    CHECK(price.id == 10);
    CHECK(reader.read_value(quote) == Status::decode_error);  // refused again after a match
    REQUIRE(reader.read_value(price) == Status::ok);
    CHECK(price.id == 11);
    Unnamed unnamed{};
    REQUIRE(reader.read_value(unnamed) == Status::ok);
    CHECK(unnamed.a == 12);
    CHECK(reader.read_value(price) == Status::end_of_stream);
}

TEST_CASE("record type: without declarations the typed calls behave as before") {
    const std::string name = test::unique_name("rtype-none");
    test::Child writer([&] { return write_unnamed(name, typed_options(""), 2); });
    REQUIRE(writer.exit_code() == 0);
    CHECK(shmchan::inspect(name).record_type.empty());
    auto reader = RecordReader::attach(name, typed_options(""));
    CHECK(reader.consumer().record_type().empty());
    // A channel without a type checks sizes only, as it always did: a named Quote of a Price's
    // size decodes.
    Quote quote{};
    CHECK(reader.read_value(quote) == Status::ok);
    Price price{};
    CHECK(reader.read_value(price) == Status::ok);
    CHECK(price.id == 1);
    CHECK(reader.read_value(price) == Status::end_of_stream);
    // A type declared on a channel created without one: refused (the type is fixed at creation).
    const std::string untyped = test::unique_name("rtype-untyped");
    test::Child creator([&] { return write_unnamed(untyped, typed_options(""), 1); });
    REQUIRE(creator.exit_code() == 0);
    SHMCHAN_CHECK_THROWS_CODE(RecordReader::attach(untyped, typed_options("a.v1")), Errc::type_mismatch);
}

TEST_CASE("record type: bad declarations are bad options") {
    const std::string name = test::unique_name("rtype-bad");
    for (const std::string& bad : {std::string("has space"), std::string(48, 'x'), std::string("tab\t"),
                                   std::string("nul\0x", 5), std::string("\xc3\xa9t\xc3\xa9")}) {
        SHMCHAN_CHECK_THROWS_CODE(RecordWriter::attach(name, typed_options(bad)), Errc::bad_options);
    }
    auto ok = RecordWriter::attach(name, typed_options(std::string(47, 'x')));
    CHECK(ok.producer().record_type() == std::string(47, 'x'));
}

TEST_CASE("record type: a damaged type field is corrupt at attach and in inspect, never a crash") {
    const std::string name = test::unique_name("rtype-damaged");
    test::Child writer([&] { return write_unnamed(name, typed_options("a.v1"), 1); });
    REQUIRE(writer.exit_code() == 0);
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    const std::size_t at = offsetof(L::ChannelHeader, record_type);
    const std::size_t length_at = at + offsetof(L::RecordType, length);
    const std::size_t name_at = at + offsetof(L::RecordType, name);
    CHECK(file.peek32(length_at) == 4);
    auto expect_corrupt = [&](const char* what) {
        INFO(what);
        SHMCHAN_CHECK_THROWS_CODE(RecordReader::attach(name, typed_options("")), Errc::corrupt);
        SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(name), Errc::corrupt);
        try {
            (void)shmchan::inspect(name);
        } catch (const shmchan::Error& error) {
            CHECK_MESSAGE(contains(error.what(), "record type"), error.what());
        }
    };
    const std::uint32_t word = file.peek32(name_at);  // "a.v1"
    file.poke32(length_at, 0xffffff00u);
    expect_corrupt("length beyond the field");
    file.poke32(length_at, 48);
    expect_corrupt("length one past the limit");
    file.poke32(length_at, 4);
    file.poke32(name_at, word ^ 0x21u);  // 'a' (0x61) becomes 0x40 '@': still printable
    CHECK(shmchan::inspect(name).record_type == "@.v1");
    file.poke32(name_at, (word & ~0xffu) | 0x07u);  // a control byte
    expect_corrupt("a byte that is not printable");
    file.poke32(name_at, word);
    file.poke32(name_at + 8, 0x41u);  // a byte after the length
    expect_corrupt("a byte after the length");
    file.poke32(name_at + 8, 0);
    CHECK(shmchan::inspect(name).record_type == "a.v1");
    auto reader = RecordReader::attach(name, typed_options("a.v1"));
    CHECK(reader.consumer().record_type() == "a.v1");
}

}  // TEST_SUITE
