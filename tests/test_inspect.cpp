// SPDX-License-Identifier: Apache-2.0
// shm-inspect against channels made by real processes: live, back-pressured, idle, dead producer,
// dead consumer, stale, being created and corrupt. The tool runs as its own process (spawn) with
// its output in files of the test's directory (files not named shmchan-*, so the tool skips
// them). JSON is parsed by the small parser below and checked field by field; the Prometheus
// output is checked line by line against the text exposition format.
#include <poll.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <variant>

#include "channel_support.hpp"
#include "channels/records.hpp"
#include "shm/region.hpp"
#include "shmchan/version.hpp"
#include "tools/inspect_format.hpp"

#ifndef SHMCHAN_SHM_INSPECT_PATH
#error "SHMCHAN_SHM_INSPECT_PATH must name the shm-inspect binary"
#endif

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

// ---- Running the tool ------------------------------------------------------------------------------

using Run = ProgramRun;

std::string read_file(const std::string& path) { return read_whole_file(path); }

std::string output_base() {
    static int counter = 0;
    return channel_directory() + "/inspect-run-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

Run run_inspect(std::vector<std::string> args, std::chrono::milliseconds deadline = 60s) {
    args.insert(args.begin(), SHMCHAN_SHM_INSPECT_PATH);
    return run_program(std::move(args), "/dev/null", -1, deadline);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::string line;
    std::istringstream in(text);
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The line of `list` output for channel `name` (lines start with the name and two spaces).
std::string list_line(const std::string& out, const std::string& name) {
    for (const auto& line : lines_of(out)) {
        if (line.rfind(name + "  ", 0) == 0) return line;
    }
    return {};
}

// ---- A minimal JSON parser -------------------------------------------------------------------------

struct Json {
    enum class Type { null, boolean, number, string, array, object } type = Type::null;
    bool boolean = false;
    std::string text;  // string value, or a number's literal
    std::vector<Json> items;
    std::vector<std::pair<std::string, Json>> members;

    const Json* find(const std::string& key) const {
        for (const auto& [k, v] : members) {
            if (k == key) return &v;
        }
        return nullptr;
    }
};

class JsonParser {
public:
    explicit JsonParser(std::string_view text) : text_(text) {}

    std::optional<Json> parse() {
        Json value;
        if (!parse_value(value, 0)) return std::nullopt;
        skip_space();
        if (i_ != text_.size()) return std::nullopt;
        return value;
    }

private:
    void skip_space() {
        while (i_ < text_.size() && (text_[i_] == ' ' || text_[i_] == '\n' || text_[i_] == '\r' || text_[i_] == '\t')) ++i_;
    }
    bool literal(std::string_view word) {
        if (text_.substr(i_, word.size()) != word) return false;
        i_ += word.size();
        return true;
    }
    bool parse_value(Json& out, int depth) {
        if (depth > 64) return false;
        skip_space();
        if (i_ >= text_.size()) return false;
        char c = text_[i_];
        if (c == '{') return parse_object(out, depth);
        if (c == '[') return parse_array(out, depth);
        if (c == '"') {
            out.type = Json::Type::string;
            return parse_string(out.text);
        }
        if (literal("true")) {
            out.type = Json::Type::boolean;
            out.boolean = true;
            return true;
        }
        if (literal("false")) {
            out.type = Json::Type::boolean;
            return true;
        }
        if (literal("null")) {
            out.type = Json::Type::null;
            return true;
        }
        return parse_number(out);
    }
    bool parse_number(Json& out) {
        static const std::regex number(R"(^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
        std::match_results<std::string_view::const_iterator> match;
        if (!std::regex_search(text_.begin() + static_cast<std::ptrdiff_t>(i_), text_.end(), match, number)) return false;
        out.type = Json::Type::number;
        out.text = match.str();
        i_ += out.text.size();
        return !out.text.empty();
    }
    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    bool hex4(std::uint32_t& value) {
        if (i_ + 4 > text_.size()) return false;
        value = 0;
        for (int k = 0; k < 4; ++k) {
            char h = text_[i_++];
            value <<= 4;
            if (h >= '0' && h <= '9') value |= static_cast<std::uint32_t>(h - '0');
            else if (h >= 'a' && h <= 'f') value |= static_cast<std::uint32_t>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') value |= static_cast<std::uint32_t>(h - 'A' + 10);
            else return false;
        }
        return true;
    }
    bool parse_string(std::string& out) {
        ++i_;  // the opening quote
        while (i_ < text_.size()) {
            unsigned char c = static_cast<unsigned char>(text_[i_++]);
            if (c == '"') return true;
            if (c < 0x20) return false;  // raw control characters are not allowed in JSON strings
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            if (i_ >= text_.size()) return false;
            char e = text_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    std::uint32_t cp = 0;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        std::uint32_t low = 0;
                        if (!literal("\\u") || !hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        return false;
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: return false;
            }
        }
        return false;
    }
    bool parse_array(Json& out, int depth) {
        out.type = Json::Type::array;
        ++i_;
        skip_space();
        if (i_ < text_.size() && text_[i_] == ']') {
            ++i_;
            return true;
        }
        while (true) {
            Json item;
            if (!parse_value(item, depth + 1)) return false;
            out.items.push_back(std::move(item));
            skip_space();
            if (i_ >= text_.size()) return false;
            if (text_[i_] == ',') {
                ++i_;
                continue;
            }
            if (text_[i_] == ']') {
                ++i_;
                return true;
            }
            return false;
        }
    }
    bool parse_object(Json& out, int depth) {
        out.type = Json::Type::object;
        ++i_;
        skip_space();
        if (i_ < text_.size() && text_[i_] == '}') {
            ++i_;
            return true;
        }
        while (true) {
            skip_space();
            if (i_ >= text_.size() || text_[i_] != '"') return false;
            std::string key;
            if (!parse_string(key)) return false;
            if (out.find(key)) return false;  // duplicate keys: our writer never makes them
            skip_space();
            if (i_ >= text_.size() || text_[i_] != ':') return false;
            ++i_;
            Json value;
            if (!parse_value(value, depth + 1)) return false;
            out.members.emplace_back(std::move(key), std::move(value));
            skip_space();
            if (i_ >= text_.size()) return false;
            if (text_[i_] == ',') {
                ++i_;
                continue;
            }
            if (text_[i_] == '}') {
                ++i_;
                return true;
            }
            return false;
        }
    }

    std::string_view text_;
    std::size_t i_ = 0;
};

std::optional<Json> parse_json(const std::string& text) { return JsonParser(text).parse(); }

// Typed field access: nullopt when the key is missing or of another type.
std::optional<std::uint64_t> u64(const Json& object, const std::string& key) {
    const Json* v = object.find(key);
    if (!v || v->type != Json::Type::number || v->text.empty() || v->text[0] == '-') return std::nullopt;
    if (v->text.find_first_of(".eE") != std::string::npos) return std::nullopt;
    return std::stoull(v->text);
}
std::optional<double> real(const Json& object, const std::string& key) {
    const Json* v = object.find(key);
    if (!v || v->type != Json::Type::number) return std::nullopt;
    return std::stod(v->text);
}
std::optional<bool> boolean(const Json& object, const std::string& key) {
    const Json* v = object.find(key);
    if (!v || v->type != Json::Type::boolean) return std::nullopt;
    return v->boolean;
}
std::optional<std::string> string(const Json& object, const std::string& key) {
    const Json* v = object.find(key);
    if (!v || v->type != Json::Type::string) return std::nullopt;
    return v->text;
}
bool is_null(const Json& object, const std::string& key) {
    const Json* v = object.find(key);
    return v && v->type == Json::Type::null;
}

// `show NAME --json`, parsed; an empty object on failure (after a failed CHECK).
Json show_json(const std::string& name) {
    Run run = run_inspect({"show", name, "--json"});
    CHECK_MESSAGE(run.code == 0, "show --json " << name << ": " << run.err);
    auto parsed = parse_json(run.out);
    CHECK_MESSAGE(parsed.has_value(), "not JSON: " << run.out);
    if (!parsed || parsed->type != Json::Type::object) {
        Json empty;
        empty.type = Json::Type::object;
        return empty;
    }
    return *parsed;
}

// The object of `list --json` for `name`.
std::optional<Json> listed_json(const std::string& name) {
    Run run = run_inspect({"list", "--json"});
    CHECK(run.code == 0);
    auto parsed = parse_json(run.out);
    CHECK_MESSAGE(parsed.has_value(), "not JSON: " << run.out);
    if (!parsed) return std::nullopt;
    CHECK(parsed->type == Json::Type::array);
    for (const auto& item : parsed->items) {
        CHECK(item.type == Json::Type::object);
        if (string(item, "name") == name) return item;
    }
    return std::nullopt;
}

// Every number of `value` is one a JSON reader holds exactly: an integer at most 2^53.
void check_exact_integers(const Json& value, const std::string& where) {
    if (value.type == Json::Type::number && value.text.find_first_of(".eE") == std::string::npos) {
        const bool negative = !value.text.empty() && value.text[0] == '-';
        const std::string digits = negative ? value.text.substr(1) : value.text;
        CHECK_MESSAGE((digits.size() < 16 || (digits.size() == 16 && digits <= "9007199254740992")),
                      where << " = " << value.text << " is above 2^53: a JSON reader rounds it");
    }
    for (const auto& item : value.items) check_exact_integers(item, where + "[]");
    for (const auto& [key, member] : value.members) check_exact_integers(member, where + "." + key);
}

// Every key the brief names, with the right type.
void check_contract_keys(const Json& o, const std::string& name) {
    check_exact_integers(o, name);
    // One name per figure: the brief's (fill is Flink's outPoolUsage; published_segments and
    // released_segments are the positions the counters also counted); times in milliseconds.
    for (const char* gone : {"outPoolUsage", "segments_published", "segments_released", "created_realtime_ns",
                             "last_publish_realtime_ns", "last_release_realtime_ns"}) {
        CHECK_MESSAGE(o.find(gone) == nullptr, "key " << gone << " is still there");
    }
    CHECK(string(o, "name") == name);
    CHECK(string(o, "path") == path_of(name));
    for (const char* key : {"segment_size", "segments", "published_segments", "released_segments", "bytes_written",
                            "records_written", "bytes_read", "records_read", "wakeups", "backpressured_ns", "idle_ns"}) {
        CHECK_MESSAGE(u64(o, key).has_value(), "key " << key);
    }
    CHECK(string(o, "state").has_value());
    CHECK(boolean(o, "stale").has_value());
    for (const char* side : {"producer", "consumer"}) {
        const Json* s = o.find(side);
        REQUIRE_MESSAGE(s, "key " << side);
        REQUIRE(s->type == Json::Type::object);
        const Json* pid = s->find("pid");
        CHECK((pid && pid->type == Json::Type::number));
        CHECK(boolean(*s, "alive").has_value());
        CHECK(string(*s, "state").has_value());
    }
}

const Json& side(const Json& o, const char* which) {
    static const Json empty = [] {
        Json j;
        j.type = Json::Type::object;
        return j;
    }();
    const Json* s = o.find(which);
    return s ? *s : empty;
}

// ---- The Prometheus text format, line by line --------------------------------------------------------

// Checks every line of `text` against the exposition format and our conventions; returns the
// samples as "name{labels}" -> value.
std::map<std::string, std::string> check_prometheus(const std::string& text) {
    static const std::regex comment(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$)");
    static const std::regex sample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([a-zA-Z_][a-zA-Z0-9_]*="(?:\\[\\"n]|[^"\\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:\\[\\"n]|[^"\\\n])*")*)\} ([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|\+Inf|-Inf)$)");
    std::map<std::string, std::string> samples;
    std::map<std::string, std::string> types;
    std::set<std::string> helped, finished;
    std::string current;  // the family whose samples may follow
    CHECK((!text.empty() && text.back() == '\n'));
    int number = 0;
    for (const auto& line : lines_of(text)) {
        ++number;
        std::smatch match;
        if (std::regex_match(line, match, comment)) {
            std::string name = match[2];
            CHECK_MESSAGE(name.rfind("shmchan_", 0) == 0, "line " << number << ": " << line);
            if (match[1] == "HELP") {
                CHECK_MESSAGE(helped.insert(name).second, "HELP twice: " << line);
            } else {
                std::string type = match[3];
                CHECK_MESSAGE((type == "counter" || type == "gauge"), line);
                CHECK_MESSAGE(types.emplace(name, type).second, "TYPE twice: " << line);
                CHECK_MESSAGE(finished.count(name) == 0, "family split: " << line);
                if (type == "counter") CHECK_MESSAGE(name.ends_with("_total"), line);
                if (!current.empty() && current != name) finished.insert(current);
                current = name;
            }
            continue;
        }
        REQUIRE_MESSAGE(std::regex_match(line, match, sample), "line " << number << " is not a sample: " << line);
        std::string name = match[1];
        CHECK_MESSAGE(name == current, "sample outside its family (after its TYPE line): " << line);
        CHECK_MESSAGE(helped.count(name) == 1, "sample without HELP: " << line);
        CHECK_MESSAGE(std::string(match[2]).rfind("channel=\"", 0) == 0, "no channel label first: " << line);
        std::string key = name + "{" + std::string(match[2]) + "}";
        CHECK_MESSAGE(samples.emplace(key, match[3]).second, "sample twice: " << line);
    }
    return samples;
}

std::string metric(const std::string& family, const std::string& channel, const std::string& extra = "") {
    return family + "{channel=\"" + channel + "\"" + extra + "}";
}

// ---- Channel processes -------------------------------------------------------------------------------

struct Flags {
    std::atomic<int> ready{0};    // child: attached and did its setup
    std::atomic<int> step{0};     // parent: do the next step
    std::atomic<int> stepped{0};  // child: did it
    std::atomic<int> quit{0};     // parent: detach and exit
    std::atomic<int> publish{0};  // parent: producer, publish one more segment
    std::atomic<int> published{0};
};

ChannelOptions small(WaitStrategy wait = WaitStrategy::hybrid) {
    ChannelOptions options = geometry(4096, 4);
    options.wait = wait;
    return options;
}

Status publish_text(Producer& producer, const std::string& text) {
    WritableSegment segment;
    Status status = producer.acquire(segment);
    if (status != Status::ok) return status;
    std::memcpy(segment.payload.data(), text.data(), text.size());
    return producer.publish(static_cast<std::uint32_t>(text.size()));
}

// A producer that publishes `texts`, reports ready, then waits for `quit` (or, with `block`,
// blocks in acquire for a free segment until a credit arrives, reports stepped, and waits).
Child producer_child(const std::string& name, Flags& flags, std::vector<std::string> texts,
                     WaitStrategy wait = WaitStrategy::hybrid, bool end = false, bool block = false) {
    return Child([name, &flags, texts, wait, end, block] {
        auto producer = Producer::attach(name, small(wait));
        for (const auto& text : texts) CHILD_EXPECT(publish_text(producer, text) == Status::ok);
        if (end) CHILD_EXPECT(producer.end_stream() == Status::ok);
        flags.ready = 1;
        if (block) {
            CHILD_EXPECT(publish_text(producer, "after the wait\n") == Status::ok);  // waits for a credit
            flags.stepped = 1;
        }
        while (flags.quit.load() == 0) {
            if (flags.publish.load() > flags.published.load()) {  // publish one more on request
                CHILD_EXPECT(publish_text(producer, "wake up\n") == Status::ok);
                flags.published.fetch_add(1);
            }
            ::usleep(1000);  // polling the parent's flag, not timing a verdict
        }
        return 0;
    });
}

// A consumer that attaches, reads and releases `reads` segments, reports ready, then either
// waits for `quit` or (with `block_reading`) blocks in read until data comes, and reports stepped.
Child consumer_child(const std::string& name, Flags& flags, int reads, WaitStrategy wait = WaitStrategy::hybrid,
                     bool block_reading = false) {
    return Child([name, &flags, reads, wait, block_reading] {
        auto consumer = Consumer::attach(name, small(wait));
        ReadableSegment segment;
        for (int k = 0; k < reads; ++k) {
            CHILD_EXPECT(consumer.read(segment) == Status::ok);
            CHILD_EXPECT(consumer.release() == Status::ok);
        }
        flags.ready = 1;
        if (block_reading) {
            CHILD_EXPECT(consumer.read(segment) == Status::ok);
            CHILD_EXPECT(consumer.release() == Status::ok);
            flags.stepped = 1;
        }
        while (flags.quit.load() == 0) {
            if (flags.step.load() > flags.stepped.load()) {  // read one more on request
                CHILD_EXPECT(consumer.read(segment) == Status::ok);
                CHILD_EXPECT(consumer.release() == Status::ok);
                flags.stepped.fetch_add(1);
            }
            ::usleep(1000);  // polling the parent's flag, not timing a verdict
        }
        return 0;
    });
}

// A file of `bytes` zero bytes at the channel path, as a creator that died before its ready mark
// leaves it; `age` back-dates its modification time.
void make_unready_file(const std::string& name, std::size_t bytes, std::chrono::seconds age) {
    int fd = ::open(path_of(name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(bytes)) == 0);
    timespec times[2];
    ::clock_gettime(CLOCK_REALTIME, &times[0]);
    times[0].tv_sec -= age.count();
    times[1] = times[0];
    REQUIRE(::futimens(fd, times) == 0);
    ::close(fd);
}

// A valid channel made and left by processes (producer publishes, then detaches).
void make_left_channel(const std::string& name, bool end) {
    Child maker([name, end] {
        auto producer = Producer::attach(name, small());
        CHILD_EXPECT(publish_text(producer, "left behind\n") == Status::ok);
        if (end) CHILD_EXPECT(producer.end_stream() == Status::ok);
        return 0;
    });
    REQUIRE(maker.exit_code() == 0);
}

void corrupt_magic(const std::string& name) {
    MappedFile file(path_of(name));
    REQUIRE(file.ok());
    file.poke64(offsets::magic, 0x0123456789abcdefull);
}

bool same_positions(const ChannelInfo& a, const ChannelInfo& b) {
    return a.published == b.published && a.released == b.released &&
           a.producer_counters.bytes == b.producer_counters.bytes &&
           a.consumer_counters.bytes == b.consumer_counters.bytes &&
           a.consumer_counters.segments == b.consumer_counters.segments &&
           a.producer_counters.wake_syscalls == b.producer_counters.wake_syscalls &&
           a.consumer_counters.wake_syscalls == b.consumer_counters.wake_syscalls;
}

std::set<std::string> names_after(const std::string& out, const std::string& verb, const std::string& stem) {
    std::set<std::string> names;
    for (const auto& line : lines_of(out)) {
        if (line.rfind(verb + " ", 0) != 0) continue;
        std::string rest = line.substr(verb.size() + 1);
        std::string name = rest.substr(0, rest.find(' '));
        if (name.rfind(stem, 0) == 0) {
            CHECK_MESSAGE(rest.find(" (") == name.size(), "no reason: " << line);
            names.insert(name);
        }
    }
    return names;
}

}  // namespace

TEST_SUITE("inspect") {

TEST_CASE("output helpers: JSON strings, Prometheus labels, text or hex") {
    namespace f = shmchan::inspect_format;
    CHECK(f::json_string("plain") == "\"plain\"");
    CHECK(f::json_string("q\"b\\n\nt\tc\x01") == "\"q\\\"b\\\\n\\nt\\tc\\u0001\"");
    CHECK(f::json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(f::json_string("bad\xff") == "\"bad\\ufffd\"");
    CHECK(f::json_string("over\xc0\xaf") == "\"over\\ufffd\\ufffd\"");
    auto parsed = parse_json("[" + f::json_string("a\"\\\n\x1f\xe2\x82\xac") + "]");
    REQUIRE(parsed);
    CHECK(parsed->items.at(0).text == "a\"\\\n\x1f\xe2\x82\xac");
    CHECK(f::prometheus_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    CHECK(f::number(0.5, true) == "0.5");
    CHECK(f::number(1.0 / 0.0, true) == "null");
    CHECK(f::number(1.0 / 0.0, false) == "+Inf");

    auto bytes = [](std::string_view s) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()); };
    CHECK(f::is_text(bytes("hello\tworld\r\n")));
    CHECK(f::is_text(bytes("caf\xc3\xa9\n")));
    CHECK_FALSE(f::is_text(bytes("esc\x1b[2J")));
    CHECK_FALSE(f::is_text(bytes(std::string_view("nul\0", 4))));
    CHECK_FALSE(f::is_text(bytes("\xc2\x9b")));     // C1 control (CSI)
    CHECK_FALSE(f::is_text(bytes("caf\xc3")));      // cut character in a whole payload
    CHECK(f::is_text(bytes("caf\xc3"), true));      // ... is fine at the end of a prefix
    std::string dump = f::hex_dump(bytes("ABCDEFGHIJKLMNOPQ\x01"));
    CHECK(dump ==
          "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n"
          "00000010  51 01                                             |Q.|\n");
}

TEST_CASE("usage: exit 2 on bad usage, 0 with --help for every command") {
    Run none = run_inspect({});
    CHECK(none.code == 2);
    CHECK_MESSAGE(none.err.find("shm-inspect: no command given; the commands are: list, show, watch, peek, gc, metrics") == 0,
                  none.err);
    Run unknown = run_inspect({"--allow-owner", "0", "frobnicate"});
    CHECK(unknown.code == 2);
    CHECK_MESSAGE(unknown.err.find("shm-inspect: unknown command 'frobnicate'; the commands are: list, show, watch, "
                                   "peek, gc, metrics") == 0,
                  unknown.err);
    Run version = run_inspect({"--version"});
    CHECK(version.code == 0);
    CHECK(version.out == "shm-inspect (shmchan) " SHMCHAN_VERSION_STRING "\n");
    Run help_all = run_inspect({"--help-all"});
    CHECK(help_all.code == 0);
    CHECK_MESSAGE(contains(help_all.out, "--older-than"), help_all.out);  // gc's option: every command's help
    CHECK(run_inspect({"show"}).code == 2);
    CHECK(run_inspect({"peek"}).code == 2);
    CHECK(run_inspect({"list", "--bogus"}).code == 2);
    CHECK(run_inspect({"peek", "x", "--count", "0"}).code == 2);
    CHECK(run_inspect({"watch", "--interval", "0"}).code == 2);
    Run bad_name = run_inspect({"show", "../etc"});
    CHECK(bad_name.code == 2);
    CHECK(bad_name.err.rfind("shm-inspect: ", 0) == 0);
    for (const char* command : {"list", "show", "watch", "peek", "gc", "metrics"}) {
        Run help = run_inspect({command, "--help"});
        CHECK_MESSAGE(help.code == 0, command);
        CHECK_MESSAGE(contains(help.out, command), command << ": " << help.out);
    }
    CHECK(run_inspect({"--help"}).code == 0);
}

TEST_CASE("live channel: list, show, peek, metrics; gc keeps it; detached it is stale and gc removes it") {
    const std::string name = unique_name("live");
    SharedBlock<Flags> pf, cf;
    Child producer = producer_child(name, *pf, {"hello 0\n", "hello 1\n", "hello 2\n"});
    REQUIRE(wait_for_flag(pf->ready, 1));
    Child consumer = consumer_child(name, *cf, 1);
    REQUIRE(wait_for_flag(cf->ready, 1));

    Json o = show_json(name);
    check_contract_keys(o, name);
    CHECK(string(o, "state") == "active");
    CHECK(boolean(o, "stale") == false);
    CHECK(is_null(o, "reason"));
    CHECK(u64(o, "segment_size") == 4096u);
    CHECK(u64(o, "segments") == 4u);
    CHECK(string(o, "framing") == "raw_bytes");
    CHECK(boolean(o, "end_of_stream") == false);
    CHECK(u64(side(o, "producer"), "pid") == static_cast<std::uint64_t>(producer.pid()));
    CHECK(boolean(side(o, "producer"), "alive") == true);
    CHECK(string(side(o, "producer"), "state") == "alive");
    CHECK(u64(side(o, "consumer"), "pid") == static_cast<std::uint64_t>(consumer.pid()));
    CHECK(boolean(side(o, "consumer"), "alive") == true);
    CHECK(u64(o, "published_segments") == 3u);
    CHECK(u64(o, "released_segments") == 1u);
    CHECK(u64(o, "unread_segments") == 2u);
    CHECK(real(o, "fill") == doctest::Approx(0.5));
    CHECK(u64(o, "bytes_written") == 24u);
    CHECK(u64(o, "bytes_read") == 8u);
    CHECK(u64(o, "records_written") == 0u);
    CHECK(u64(o, "records_read") == 0u);
    // The consumer released segment 0: a successor would resume at segment 1, offset 0. Nothing
    // was flushed (raw segments): the flush word names no segment.
    CHECK(u64(o, "resume_segment") == 1u);
    CHECK(u64(o, "resume_offset") == 0u);
    CHECK(u64(o, "in_flight_record_bytes") == 0u);
    CHECK(is_null(o, "flushed_segment"));
    CHECK(u64(o, "flushed_bytes") == 0u);
    CHECK(u64(o, "buffer_timeout_ns").has_value());
    ChannelInfo info = shmchan::inspect(name);
    CHECK(u64(o, "wakeups") == info.producer_counters.wake_syscalls + info.consumer_counters.wake_syscalls);

    auto listed = listed_json(name);
    REQUIRE(listed);
    CHECK(string(*listed, "state") == "active");
    CHECK(u64(*listed, "published_segments") == 3u);

    Run list = run_inspect({"list"});
    CHECK(list.code == 0);
    std::string line = list_line(list.out, name);
    CHECK_MESSAGE(contains(line, "  active  4x4KiB"), line);
    CHECK_MESSAGE(contains(line, "producer " + std::to_string(producer.pid()) + " alive"), line);
    CHECK_MESSAGE(contains(line, "consumer " + std::to_string(consumer.pid()) + " alive"), line);
    CHECK_MESSAGE(contains(line, "fill 50%"), line);
    CHECK_FALSE(contains(line, "stale"));

    Run show = run_inspect({"show", name});
    CHECK(show.code == 0);
    CHECK(contains(show.out, "active"));
    CHECK(contains(show.out, "published 3, released 1, unread 2"));
    CHECK_MESSAGE(contains(show.out, "resume at segment 1 offset 0"), show.out);

    // peek decodes the two unread segments and moves nothing.
    ChannelInfo before = shmchan::inspect(name);
    Run peek = run_inspect({"peek", name});
    ChannelInfo after = shmchan::inspect(name);
    CHECK(peek.code == 0);
    CHECK_MESSAGE(contains(peek.out, "segment 1 (slot 1): 8 bytes, text:\nhello 1\n"), peek.out);
    CHECK(contains(peek.out, "segment 2 (slot 2): 8 bytes, text:\nhello 2\n"));
    CHECK_FALSE(contains(peek.out, "hello 0"));
    CHECK(same_positions(before, after));
    Run peek_one = run_inspect({"peek", name, "--count", "1"});
    CHECK(peek_one.code == 0);
    CHECK(contains(peek_one.out, "hello 1"));
    CHECK_FALSE(contains(peek_one.out, "hello 2"));
    CHECK(contains(peek_one.out, "1 more unread segment"));

    Run metrics = run_inspect({"metrics"});
    CHECK(metrics.code == 0);
    auto samples = check_prometheus(metrics.out);
    CHECK(samples[metric("shmchan_segments_published_total", name)] == "3");
    CHECK(samples[metric("shmchan_segments_released_total", name)] == "1");
    CHECK(samples[metric("shmchan_bytes_written_total", name)] == "24");
    CHECK(samples[metric("shmchan_bytes_read_total", name)] == "8");
    CHECK(samples[metric("shmchan_fill_ratio", name)] == "0.5");
    CHECK(samples[metric("shmchan_segments", name)] == "4");
    CHECK(samples[metric("shmchan_segment_size_bytes", name)] == "4096");
    CHECK(samples[metric("shmchan_producer_alive", name)] == "1");
    CHECK(samples[metric("shmchan_consumer_alive", name)] == "1");
    CHECK(samples[metric("shmchan_up", name)] == "1");
    CHECK(samples[metric("shmchan_channel_corrupt", name)] == "0");
    CHECK(samples[metric("shmchan_stale", name)] == "0");
    CHECK(samples.count(metric("shmchan_wake_syscalls_total", name, ",side=\"producer\"")) == 1);
    CHECK(samples.count(metric("shmchan_backpressured_seconds_total", name)) == 1);
    CHECK(samples.count(metric("shmchan_idle_seconds_total", name)) == 1);
    CHECK(samples[metric("shmchan_channel_state", name, ",state=\"active\"")] == "1");

    Run dry = run_inspect({"gc", "--dry-run"});
    CHECK(dry.code == 0);
    CHECK(names_after(dry.out, "would remove", name).empty());
    Run gc = run_inspect({"gc"});
    CHECK(gc.code == 0);
    CHECK(names_after(gc.out, "removed", name).empty());
    CHECK(file_exists(path_of(name)));
    CHECK(same_positions(after, shmchan::inspect(name)));

    // Both sides detach cleanly without ending the stream: broken, stale, and gc removes it.
    pf->quit = 1;
    cf->quit = 1;
    CHECK(producer.exit_code() == 0);
    CHECK(consumer.exit_code() == 0);
    o = show_json(name);
    CHECK(string(o, "state") == "broken");
    CHECK(boolean(o, "stale") == true);
    CHECK(string(side(o, "producer"), "state") == "detached");
    CHECK(boolean(side(o, "producer"), "alive") == false);
    gc = run_inspect({"gc"});
    CHECK(gc.code == 0);
    CHECK(names_after(gc.out, "removed", name) == std::set<std::string>{name});
    CHECK_FALSE(file_exists(path_of(name)));
    Run missing = run_inspect({"show", name});
    CHECK(missing.code == 1);
    CHECK(lines_of(missing.err).size() == 1);
    CHECK(contains(missing.err, "shm-inspect: no channel '" + name + "'"));
    CHECK(run_inspect({"peek", name}).code == 1);
}

TEST_CASE("JSON integers stay exact: times in milliseconds, counters above 2^53 as strings") {
    const std::string name = unique_name("big");
    make_left_channel(name, /*end=*/false);
    Json o = show_json(name);
    check_contract_keys(o, name);
    const auto now_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    REQUIRE(u64(o, "created_unix_ms").has_value());
    CHECK(*u64(o, "created_unix_ms") <= now_ms);
    CHECK(*u64(o, "created_unix_ms") + 600'000 > now_ms);
    CHECK(u64(o, "last_publish_unix_ms").has_value());
    CHECK(u64(o, "last_release_unix_ms").has_value());

    // Counters that grew past 2^53 (months of bytes or nanoseconds): decimal strings, exact.
    constexpr std::size_t counters = offsetof(layout::ChannelHeader, producer_counters);
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke64(counters + offsetof(layout::ProducerCounters, bytes_written), (1ull << 60) + 1);
        file.poke64(counters + offsetof(layout::ProducerCounters, backpressured_ns), (1ull << 53) + 1);
        file.poke64(counters + offsetof(layout::ProducerCounters, records_written), 1ull << 53);
    }
    o = show_json(name);
    check_exact_integers(o, name);
    CHECK(string(o, "bytes_written") == "1152921504606846977");
    CHECK(string(o, "backpressured_ns") == "9007199254740993");
    CHECK(u64(o, "records_written") == (1ull << 53));  // 2^53 itself is exact
    auto listed = listed_json(name);
    REQUIRE(listed);
    CHECK(string(*listed, "bytes_written") == "1152921504606846977");
    CHECK(run_inspect({"gc", name}).code == 0);
}

TEST_CASE("back-pressured and idle channels: show, watch, peek") {
    const std::string full = unique_name("backpressured");
    const std::string idle = unique_name("idle");
    SharedBlock<Flags> fp, fc, ip, ic;
    // Back-pressured: the producer fills the 4-segment ring and waits for a credit; the consumer is
    // attached and does not read.
    Child full_consumer = consumer_child(full, *fc, 0, WaitStrategy::park);
    REQUIRE(wait_for_flag(fc->ready, 1));
    Child full_producer = producer_child(full, *fp, {"one\n", "two\n", "three\n", "four\n"}, WaitStrategy::park,
                                         false, /*block=*/true);
    REQUIRE(wait_for_flag(fp->ready, 1));
    REQUIRE(eventually([&] { return shmchan::inspect(full).producer.sleeping; }));
    // Idle: the consumer waits in read; the producer is attached and publishes nothing.
    Child idle_producer = producer_child(idle, *ip, {}, WaitStrategy::park);
    REQUIRE(wait_for_flag(ip->ready, 1));
    Child idle_consumer = consumer_child(idle, *ic, 0, WaitStrategy::park, /*block_reading=*/true);
    REQUIRE(eventually([&] { return shmchan::inspect(idle).consumer.sleeping; }));

    Json o = show_json(full);
    check_contract_keys(o, full);
    CHECK(string(o, "state") == "active");
    CHECK(real(o, "fill") == doctest::Approx(1.0));
    CHECK(u64(o, "unread_segments") == 4u);
    CHECK(boolean(side(o, "producer"), "sleeping") == true);
    CHECK(u64(o, "backpressured_ns") == 0u);  // counted when the wait ends

    o = show_json(idle);
    check_contract_keys(o, idle);
    CHECK(real(o, "fill") == doctest::Approx(0.0));
    CHECK(boolean(side(o, "consumer"), "sleeping") == true);

    Run watch = run_inspect({"watch", "--interval", "0.1", "--count", "3"});
    CHECK(watch.code == 0);
    CHECK_FALSE(contains(watch.out, "\x1b"));  // not a terminal: plain lines
    auto frames = 0;
    std::string last_full, last_idle;
    for (const auto& line : lines_of(watch.out)) {
        if (line.rfind("shm-inspect watch", 0) == 0) ++frames;
        if (line.rfind(full + " ", 0) == 0) last_full = line;
        if (line.rfind(idle + " ", 0) == 0) last_idle = line;
    }
    CHECK(frames == 3);
    CHECK_MESSAGE(contains(last_full, "back-pressured"), last_full);
    CHECK_MESSAGE(contains(last_full, "[####################] 100%"), last_full);
    CHECK_MESSAGE(contains(last_idle, std::to_string(idle_consumer.pid()) + " idle"), last_idle);
    CHECK_MESSAGE(contains(last_idle, std::to_string(idle_producer.pid()) + " running"), last_idle);
    Run watch_one = run_inspect({"watch", full, "--interval", "0.1", "--count", "1"});
    CHECK(watch_one.code == 0);
    CHECK_FALSE(contains(watch_one.out, idle));

    ChannelInfo before = shmchan::inspect(full);
    Run peek = run_inspect({"peek", full});
    CHECK(peek.code == 0);
    CHECK(contains(peek.out, "4 unread segments (positions 0..3)"));
    CHECK(contains(peek.out, "text:\nfour\n"));
    CHECK(same_positions(before, shmchan::inspect(full)));
    CHECK(shmchan::inspect(full).producer.sleeping);  // peek woke nobody

    // A credit ends the back-pressure; data ends the idle wait: both totals grow.
    fc->step = 1;
    REQUIRE(wait_for_flag(fp->stepped, 1));
    o = show_json(full);
    CHECK(u64(o, "backpressured_ns") > 0u);
    CHECK(u64(o, "published_segments") == 5u);
    CHECK(u64(o, "wakeups") >= 1u);
    CHECK(u64(o, "parks") >= 1u);
    ip->publish = 1;
    REQUIRE(wait_for_flag(ic->stepped, 1));
    o = show_json(idle);
    CHECK(u64(o, "idle_ns") > 0u);
    CHECK(u64(o, "bytes_read") == 8u);
    CHECK(string(o, "state") == "active");
    fp->quit = 1;
    fc->quit = 1;
    ic->quit = 1;
    ip->quit = 1;
}

TEST_CASE("dead producer, dead consumer, pid reused, stale") {
    const std::string dead_producer = unique_name("deadproducer");
    const std::string dead_consumer = unique_name("deadconsumer");
    SharedBlock<Flags> ap, ac, bp, bc;
    Child a_producer = producer_child(dead_producer, *ap, {"data 0\n", "data 1\n"});
    REQUIRE(wait_for_flag(ap->ready, 1));
    Child a_consumer = consumer_child(dead_producer, *ac, 0);
    REQUIRE(wait_for_flag(ac->ready, 1));
    Child b_producer = producer_child(dead_consumer, *bp, {"x\n", "y\n", "z\n"});
    REQUIRE(wait_for_flag(bp->ready, 1));
    Child b_consumer = consumer_child(dead_consumer, *bc, 1);
    REQUIRE(wait_for_flag(bc->ready, 1));
    const std::int32_t a_producer_pid = a_producer.pid(), b_consumer_pid = b_consumer.pid();
    a_producer.kill(SIGKILL);
    CHECK(a_producer.exit_code() == -(100 + SIGKILL));
    b_consumer.kill(SIGKILL);
    CHECK(b_consumer.exit_code() == -(100 + SIGKILL));

    Json o = show_json(dead_producer);
    check_contract_keys(o, dead_producer);
    CHECK(string(o, "state") == "broken");
    CHECK(boolean(o, "stale") == false);
    CHECK(u64(side(o, "producer"), "pid") == static_cast<std::uint64_t>(a_producer_pid));
    CHECK(boolean(side(o, "producer"), "alive") == false);
    auto state = string(side(o, "producer"), "state").value_or("");
    CHECK_MESSAGE((state == "dead" || state == "pid reused"), state);
    CHECK(boolean(side(o, "consumer"), "alive") == true);
    CHECK(u64(o, "published_segments") == 2u);

    o = show_json(dead_consumer);
    CHECK(string(o, "state") == "broken");
    CHECK(boolean(o, "stale") == false);
    CHECK(u64(side(o, "consumer"), "pid") == static_cast<std::uint64_t>(b_consumer_pid));
    CHECK(boolean(side(o, "consumer"), "alive") == false);
    CHECK(boolean(side(o, "producer"), "alive") == true);
    CHECK(u64(o, "released_segments") == 1u);

    Run list = run_inspect({"list"});
    std::string line = list_line(list.out, dead_producer);
    CHECK_MESSAGE(contains(line, "  broken  "), line);
    CHECK_MESSAGE((contains(line, "producer " + std::to_string(a_producer_pid) + " dead") ||
                   contains(line, "producer " + std::to_string(a_producer_pid) + " pid-reused")),
                  line);
    line = list_line(list.out, dead_consumer);
    CHECK_MESSAGE(contains(line, "  broken  "), line);
    CHECK_FALSE(contains(line, "stale"));

    // What was published before the death is still there to read, and peek shows it.
    Run peek = run_inspect({"peek", dead_producer});
    CHECK(peek.code == 0);
    CHECK(contains(peek.out, "data 0\n"));
    CHECK(contains(peek.out, "data 1\n"));

    Run watch = run_inspect({"watch", dead_producer, "--count", "1", "--interval", "0.1"});
    CHECK(watch.code == 0);
    CHECK_MESSAGE(contains(watch.out, std::to_string(a_producer_pid) + " dead"), watch.out);

    // Each still has a live side: gc keeps both.
    Run gc = run_inspect({"gc"});
    CHECK(names_after(gc.out, "removed", "dead").empty());
    CHECK(file_exists(path_of(dead_producer)));
    CHECK(file_exists(path_of(dead_consumer)));

    // The dead producer's pid now names a live process with another start time: "pid reused".
    {
        MappedFile file(path_of(dead_producer));
        REQUIRE(file.ok());
        file.poke32(offsets::producer_pid, static_cast<std::uint32_t>(::getpid()));
        file.poke64(offsets::producer_start_time, 1);
    }
    o = show_json(dead_producer);
    CHECK(string(side(o, "producer"), "state") == "pid reused");
    CHECK(boolean(side(o, "producer"), "alive") == false);
    CHECK(contains(list_line(run_inspect({"list"}).out, dead_producer), "pid-reused"));

    // The last live side dies: stale.
    a_consumer.kill(SIGKILL);
    a_consumer.exit_code();
    o = show_json(dead_producer);
    CHECK(string(o, "state") == "broken");
    CHECK(boolean(o, "stale") == true);
    CHECK(contains(list_line(run_inspect({"list"}).out, dead_producer), "  stale"));
    auto samples = check_prometheus(run_inspect({"metrics"}).out);
    CHECK(samples[metric("shmchan_stale", dead_producer)] == "1");
    CHECK(samples[metric("shmchan_producer_alive", dead_producer)] == "0");
    CHECK(samples[metric("shmchan_channel_state", dead_producer, ",state=\"broken\"")] == "1");
    bp->quit = 1;
}

TEST_CASE("corrupt channels: listed with the reason, show and peek exit 1, never a crash") {
    const std::string bad_magic = unique_name("badmagic");
    const std::string half = unique_name("halfmade");
    const std::string young = unique_name("young");
    const std::string tiny = unique_name("tiny");
    const std::string bad_segments = unique_name("badsegments");
    make_left_channel(bad_magic, true);
    corrupt_magic(bad_magic);
    make_unready_file(half, 4096 + 4 * 4096, 10s);
    make_unready_file(young, 4096 + 4 * 4096, 0s);
    make_unready_file(tiny, 100, 10s);

    Run list = run_inspect({"list"});
    CHECK(list.code == 0);
    std::string line = list_line(list.out, bad_magic);
    CHECK_MESSAGE(contains(line, "  corrupt  stale  reason: "), line);
    CHECK_MESSAGE(contains(line, "bad magic"), line);
    CHECK_MESSAGE(contains(list_line(list.out, half), "  corrupt  stale  reason: "), list.out);
    CHECK(contains(list_line(list.out, half), "half-created"));
    CHECK(contains(list_line(list.out, tiny), "smaller than a header"));
    CHECK_MESSAGE(contains(list_line(list.out, young), "  creating"), list.out);
    CHECK_FALSE(contains(list_line(list.out, young), "stale"));

    auto listed = listed_json(bad_magic);
    REQUIRE(listed);
    CHECK(string(*listed, "state") == "corrupt");
    CHECK(contains(string(*listed, "reason").value_or(""), "bad magic"));
    CHECK(boolean(*listed, "stale") == true);
    CHECK(is_null(*listed, "segments"));
    CHECK(is_null(*listed, "producer"));
    CHECK(string(*listed, "path") == path_of(bad_magic));
    // "Young" is younger than shm-inspect's 2 s grace: made young again right before each look,
    // so that a slow run (sanitizers, a loaded machine) does not age it into "corrupt".
    make_unready_file(young, 4096 + 4 * 4096, 0s);
    listed = listed_json(young);
    REQUIRE(listed);
    CHECK(string(*listed, "state") == "creating");

    for (const auto& name : {bad_magic, half}) {
        for (const char* command : {"show", "peek"}) {
            Run run = run_inspect({command, name});
            CHECK_MESSAGE(run.code == 1, command << " " << name);
            CHECK(run.out.empty());
            CHECK(lines_of(run.err).size() == 1);
            CHECK(run.err.rfind("shm-inspect: ", 0) == 0);
        }
    }
    CHECK(contains(run_inspect({"show", bad_magic, "--json"}).err, "bad magic"));
    CHECK(contains(run_inspect({"show", half}).err, "half-created"));

    make_unready_file(young, 4096 + 4 * 4096, 0s);
    auto samples = check_prometheus(run_inspect({"metrics"}).out);
    CHECK(samples[metric("shmchan_channel_corrupt", bad_magic)] == "1");
    CHECK(samples[metric("shmchan_up", bad_magic)] == "0");
    CHECK(samples.count(metric("shmchan_segments", bad_magic)) == 0);
    CHECK(samples[metric("shmchan_channel_state", young, ",state=\"creating\"")] == "1");

    // Bad segments: peek reports them, reads nothing out of bounds, and exits 1.
    make_left_channel(bad_segments, false);
    {
        Child second([bad_segments] {
            auto producer = Producer::attach(bad_segments, small());
            CHILD_EXPECT(publish_text(producer, "second\n") == Status::ok);
            CHILD_EXPECT(publish_text(producer, "third\n") == Status::ok);
            return 0;
        });
        REQUIRE(second.exit_code() == 0);
        MappedFile file(path_of(bad_segments));
        REQUIRE(file.ok());
        file.segment(0, 4096).sequence = 77;                   // position 0 claims another sequence
        file.segment(1, 4096).committed_bytes = 0x7fffffffu;  // position 1 claims too many bytes
    }
    Run peek = run_inspect({"peek", bad_segments});
    CHECK(peek.code == 1);
    CHECK_MESSAGE(contains(peek.out, "segment 0 (slot 0): bad segment: carries sequence 77"), peek.out);
    CHECK(contains(peek.out, "segment 1 (slot 1): bad segment: claims 2147483647 bytes"));
    CHECK(contains(peek.out, "segment 2 (slot 2): 6 bytes, text:\nthird\n"));
    CHECK(run_inspect({"show", bad_segments}).code == 0);  // the header itself is fine

    // A header field out of range: corrupt with the field named.
    {
        MappedFile file(path_of(bad_segments));
        REQUIRE(file.ok());
        file.poke32(offsets::segment_count, 0);
    }
    Run show = run_inspect({"show", bad_segments});
    CHECK(show.code == 1);
    CHECK_MESSAGE(contains(show.err, "segment count 0 out of range"), show.err);
}

TEST_CASE("record type: show names it (null without one); a damaged one is corrupt, never a crash") {
    const std::string typed = unique_name("typed");
    const std::string untyped = unique_name("untyped");
    for (const auto& [name, type] : {std::pair{typed, std::string("trade.v1")}, std::pair{untyped, std::string()}}) {
        Child maker([name = name, type = type] {
            ChannelOptions options = small();
            options.record_type = type;
            auto producer = Producer::attach(name, options);
            CHILD_EXPECT(producer.end_stream() == Status::ok);
            return 0;
        });
        REQUIRE(maker.exit_code() == 0);
    }
    Json o = show_json(typed);
    CHECK(string(o, "record_type") == "trade.v1");
    CHECK(is_null(show_json(untyped), "record_type"));
    Run text = run_inspect({"show", typed});
    CHECK(text.code == 0);
    CHECK_MESSAGE(contains(text.out, "trade.v1"), text.out);

    MappedFile file(path_of(typed));
    REQUIRE(file.ok());
    file.poke32(offsetof(layout::ChannelHeader, record_type) + offsetof(layout::RecordType, length), 200);
    Run show = run_inspect({"show", typed, "--json"});
    CHECK(show.code == 1);
    CHECK_MESSAGE(contains(show.err, "record type"), show.err);
    auto listed = listed_json(typed);
    REQUIRE(listed);
    CHECK(string(*listed, "state") == "corrupt");
    CHECK(contains(string(*listed, "reason").value_or(""), "record type"));
    CHECK(is_null(*listed, "record_type"));
}

TEST_CASE("gc removes exactly the channels that no live process holds") {
    const std::string stem = "gc" + std::to_string(::getpid()) + "-";
    const std::string live = stem + "live", ended = stem + "ended", killed = stem + "killed",
                      corrupt = stem + "corrupt", half = stem + "half", young = stem + "young",
                      creating = stem + "creating", consumer_only = stem + "consumeronly",
                      unsafe = stem + "unsafe";
    SharedBlock<Flags> lp, lc, kp, co;
    SharedBlock<Flags> cr;
    Child live_producer = producer_child(live, *lp, {"a\n"});
    REQUIRE(wait_for_flag(lp->ready, 1));
    Child live_consumer = consumer_child(live, *lc, 0);
    REQUIRE(wait_for_flag(lc->ready, 1));
    make_left_channel(ended, true);
    Child killed_producer = producer_child(killed, *kp, {"b\n"});
    REQUIRE(wait_for_flag(kp->ready, 1));
    killed_producer.kill(SIGKILL);
    killed_producer.exit_code();
    make_left_channel(corrupt, false);
    corrupt_magic(corrupt);
    make_unready_file(half, 4096 + 4 * 4096, 10s);
    Child creator([&cr, creating] {
        // A creator that holds its creation lock and never writes the ready mark.
        auto region = shm::Region::create(path_of(creating), 4096 + 4 * 4096, {}, layout::kCreatingLockByte);
        cr->ready = 1;
        CHILD_EXPECT(wait_for_flag(cr->quit, 1, 120s));
        return 0;
    });
    REQUIRE(wait_for_flag(cr->ready, 1));
    Child consumer = consumer_child(consumer_only, *co, 0);
    REQUIRE(wait_for_flag(co->ready, 1));
    make_left_channel(unsafe, false);
    REQUIRE(::chmod(path_of(unsafe).c_str(), 0666) == 0);  // the library refuses to open it
    REQUIRE(::mkdir((channel_directory() + "/shmchan-" + stem + "dir").c_str(), 0700) == 0);

    // `ended` holds a stream that ended cleanly and was never read: handed over, not garbage.
    const std::set<std::string> expected{killed, corrupt, half, unsafe};
    const std::vector<std::string> kept{live, young, creating, consumer_only, ended};

    make_unready_file(young, 4096 + 4 * 4096, 0s);  // fresh: a creator may be about to lock it
    Run dry = run_inspect({"gc", "--dry-run"});
    CHECK(dry.code == 0);
    CHECK(names_after(dry.out, "would remove", stem) == expected);
    for (const auto& name : expected) CHECK_MESSAGE(file_exists(path_of(name)), name);
    CHECK(contains(dry.out, "would remove " + corrupt + " (corrupt: "));

    make_unready_file(young, 4096 + 4 * 4096, 0s);
    Run gc = run_inspect({"gc"});
    CHECK_MESSAGE(gc.code == 0, gc.err);
    CHECK(names_after(gc.out, "removed", stem) == expected);
    for (const auto& name : expected) CHECK_MESSAGE(!file_exists(path_of(name)), name);
    for (const auto& name : kept) CHECK_MESSAGE(file_exists(path_of(name)), name);
    CHECK(file_exists(channel_directory() + "/shmchan-" + stem + "dir"));
    CHECK(contains(gc.err, "kept " + ended + ": its stream ended and was not read yet"));

    // --all takes the unread stream too, and nothing that a live process holds.
    Run all = run_inspect({"gc", "--all"});
    CHECK_MESSAGE(all.code == 0, all.err);
    CHECK(names_after(all.out, "removed", stem).count(ended) == 1);  // (`young` may have aged past its grace)
    for (const auto& name : {live, creating, consumer_only}) CHECK_MESSAGE(file_exists(path_of(name)), name);

    // The survivors still work: the live pair is untouched.
    Json o = show_json(live);
    CHECK(string(o, "state") == "active");
    CHECK(boolean(side(o, "producer"), "alive") == true);
    lp->quit = 1;
    lc->quit = 1;
    co->quit = 1;
    cr->quit = 1;
    CHECK(live_producer.exit_code() == 0);
    CHECK(live_consumer.exit_code() == 0);
    CHECK(creator.exit_code() == 0);
    ::rmdir((channel_directory() + "/shmchan-" + stem + "dir").c_str());
}

// What `shm-inspect watch --count 2` draws on a pseudo-terminal `columns` wide.
std::string watch_on_terminal(unsigned short columns, bool no_colour) {
    winsize size{};
    size.ws_row = 40;
    size.ws_col = columns;
    int terminal = -1;
    pid_t pid = ::forkpty(&terminal, nullptr, nullptr, &size);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (no_colour) ::setenv("NO_COLOR", "1", 1); else ::unsetenv("NO_COLOR");
        ::unsetenv("COLUMNS");
        ::execl(SHMCHAN_SHM_INSPECT_PATH, "shm-inspect", "watch", "--count", "2", "--interval", "0.05", nullptr);
        ::_exit(127);
    }
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd ready{terminal, POLLIN, 0};
        if (::poll(&ready, 1, 1000) <= 0) continue;
        char buffer[4096];
        ssize_t n = ::read(terminal, buffer, sizeof buffer);
        if (n > 0) out.append(buffer, static_cast<std::size_t>(n));
        else if (n < 0 && errno == EINTR) continue;
        else break;  // EIO: the program exited and closed its side
    }
    ::kill(pid, SIGKILL);  // gone already unless it hung past the deadline
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(terminal);
    return out;
}

// The text of terminal output without escape sequences (CSI ... final byte) and carriage returns.
std::string visible(const std::string& drawn) {
    std::string out;
    for (std::size_t k = 0; k < drawn.size(); ++k) {
        if (drawn[k] == '\x1b' && k + 1 < drawn.size() && drawn[k + 1] == '[') {
            k += 2;
            while (k < drawn.size() && !(drawn[k] >= 0x40 && drawn[k] <= 0x7e)) ++k;
            continue;
        }
        if (drawn[k] != '\r') out += drawn[k];
    }
    return out;
}

TEST_CASE("watch on a terminal: rows fit its width, colour unless NO_COLOR") {
    const std::string name = unique_name("a-channel-with-a-rather-long-name-for-the-watch-view");
    make_left_channel(name, /*end=*/false);
    const std::regex colour("\x1b\\[[0-9;]*m");
    for (unsigned short columns : {40, 60, 80, 100, 250}) {
        CAPTURE(columns);
        std::string drawn = watch_on_terminal(columns, /*no_colour=*/false);
        CHECK_MESSAGE(std::regex_search(drawn, colour), drawn);
        std::string text = visible(drawn);
        CHECK_MESSAGE(contains(text, name.substr(0, 6)), text);
        if (columns >= 60) CHECK_MESSAGE(contains(text, "MB/s"), text);
        int rows = 0;
        for (const auto& line : lines_of(text)) {
            CHECK_MESSAGE(line.size() <= columns, "a row of " << line.size() << " columns: " << line);
            ++rows;
        }
        CHECK(rows >= 6);  // two frames of title, header and the channel
        if (columns >= 250) CHECK_MESSAGE(contains(text, "idle ms/s"), text);  // wide: every column
    }
    std::string plain = watch_on_terminal(80, /*no_colour=*/true);
    CHECK_MESSAGE(contains(visible(plain), "MB/s"), plain);
    CHECK_MESSAGE(!std::regex_search(plain, colour), plain);
    CHECK(run_inspect({"gc", name}).code == 0);
}

TEST_CASE("watch runs until SIGINT or SIGTERM and exits 0") {
    const std::string name = unique_name("watched");
    make_left_channel(name, true);
    for (int signal_number : {SIGTERM, SIGINT}) {
        std::string base = output_base();
        pid_t pid = spawn({SHMCHAN_SHM_INSPECT_PATH, "watch", "--interval", "0.05"}, "/dev/null", base + ".out");
        REQUIRE(pid > 0);
        REQUIRE(eventually([&] { return contains(read_file(base + ".out"), name); }));
        ::kill(pid, signal_number);
        // The default deadline (120 s): the verdict is the exit status, not how long it took
        // (one CI run under ASan, with the machine loaded, took over 10 s here).
        CHECK(wait_exit(pid) == 0);
        bool row = false;
        for (const auto& line : lines_of(read_file(base + ".out"))) {
            if (line.rfind(name + " ", 0) == 0 && contains(line, " ended ")) row = true;
        }
        CHECK(row);
        ::unlink((base + ".out").c_str());
    }
}

TEST_CASE("peek decodes records and events without consuming them") {
    const std::string name = unique_name("records");
    Child first([name] {
        auto writer = RecordWriter::attach(name, small());
        CHILD_EXPECT(writer.write(std::string_view("alpha")) == Status::ok);
        CHILD_EXPECT(writer.write(std::string_view("beta")) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(42) == Status::ok);
        const unsigned char binary[] = {0, 1, 2, 255};
        CHILD_EXPECT(writer.write(std::as_bytes(std::span(binary))) == Status::ok);
        const char mark[] = "wm";
        CHILD_EXPECT(writer.write_event(7, std::as_bytes(std::span(mark, 2))) == Status::ok);
        return 0;  // detaches without ending: the records sit committed in an unpublished segment
    });
    REQUIRE(first.exit_code() == 0);
    Json o = show_json(name);
    CHECK(string(o, "framing") == "records");

    ChannelInfo before = shmchan::inspect(name);
    Run peek = run_inspect({"peek", name});
    CHECK_MESSAGE(peek.code == 0, peek.err);
    CHECK_MESSAGE(contains(peek.out, "record @0:0, 5 bytes: alpha\n"), peek.out);
    CHECK(contains(peek.out, "record @0:16, 4 bytes: beta\n"));
    CHECK(contains(peek.out, "checkpoint barrier 42\n"));
    CHECK(contains(peek.out, "4 bytes, binary:\n00000000  00 01 02 ff"));
    CHECK(contains(peek.out, "user event 7, 2 bytes: wm\n"));
    CHECK(same_positions(before, shmchan::inspect(name)));
    Run one = run_inspect({"peek", name, "--count", "1"});
    CHECK(contains(one.out, "alpha"));
    CHECK_FALSE(contains(one.out, "beta"));

    // A record larger than a segment spans segments; then the end of the stream.
    Child second([name] {
        auto writer = RecordWriter::attach(name, small());
        CHILD_EXPECT(writer.write(std::string(5000, 'x')) == Status::ok);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    REQUIRE(second.exit_code() == 0);
    before = shmchan::inspect(name);
    peek = run_inspect({"peek", name, "--max-bytes", "0"});
    CHECK_MESSAGE(peek.code == 0, peek.err);
    CHECK(contains(peek.out, "alpha"));
    CHECK_MESSAGE(contains(peek.out, ", 5000 bytes, spanning segments 0..1: " + std::string(5000, 'x') + "\n"), peek.out);
    CHECK(contains(peek.out, "end of stream\n"));
    CHECK(same_positions(before, shmchan::inspect(name)));
    Run cut = run_inspect({"peek", name});
    CHECK(contains(cut.out, "... 904 more bytes"));

    // A frame with an unknown kind: reported, exit 1.
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke32(layout::kHeaderBytes + layout::kSegmentHeaderBytes + 4, 0x00000009u);  // kind 9
    }
    Run bad = run_inspect({"peek", name});
    CHECK(bad.code == 1);
    CHECK(contains(bad.err, "unknown frame kind 9"));
}

// The "record @SEG:OFF, N bytes..." lines of peek's output, in order.
std::vector<std::string> record_lines(const std::string& out) {
    std::vector<std::string> records;
    for (const auto& line : lines_of(out)) {
        if (line.rfind("record @", 0) == 0) records.push_back(line);
    }
    return records;
}

// A records channel whose unpublished segment 0 holds a plain record "head" (at payload offset
// 0), then five 12-byte records, "run record 0" .. "run record 4", written by one write_values()
// call: one record_run frame (layout.hpp) at offset 16, its records from offset 64 (the first
// 64-byte boundary after its two headers) back to back, at 64, 76, 88, 100 and 112. (The head
// record makes the writer hold the segment, so that the whole batch goes into one run.)
void write_head_and_run_of_five(const std::string& name) {
    struct Text12 {
        char text[12];
    };
    static_assert(sizeof(Text12) == 12);
    Child writer([name] {
        auto records = RecordWriter::attach(name, small());
        CHILD_EXPECT(records.write(std::string_view("head")) == Status::ok);
        Text12 values[5];
        for (int i = 0; i < 5; ++i) std::memcpy(values[i].text, ("run record " + std::to_string(i)).data(), 12);
        std::size_t written = 0;
        CHILD_EXPECT(records.write_values(std::span<const Text12>(values), written) == Status::ok);
        CHILD_EXPECT(written == 5);
        return 0;  // detaches without ending: the frames sit committed in segment 0
    });
    REQUIRE(writer.exit_code() == 0);
}
constexpr std::uint32_t kRunFrameOffset = 16, kRunDataOffset = 64;
const std::string kHeadLine = "record @0:0, 4 bytes: head";

// The offset of record i of the run above, and peek's line for it.
std::uint32_t run_record_offset(std::uint32_t i) { return kRunDataOffset + 12 * i; }
std::string run_record_line(std::uint32_t i, const std::string& label) {
    return "record @0:" + std::to_string(run_record_offset(i)) + ", 12 bytes " + label + ": run record " +
           std::to_string(i);
}

// A consumer that attaches (resuming where the last one stopped), reads `reads` records, checks
// that they are `expected` in order, and dies: no release, no detach. The last record it read
// was not finished (a record is finished at the next read), so its successor resumes there.
int read_and_die(const std::string& name, const std::vector<std::string>& expected) {
    Child consumer([name, expected] {
        auto records = RecordReader::attach(name, small());
        for (const std::string& text : expected) {
            Record record;
            CHILD_EXPECT(records.try_read(record) == Status::ok);
            CHILD_EXPECT(std::string_view(reinterpret_cast<const char*>(record.bytes.data()), record.bytes.size()) == text);
        }
        std::fflush(nullptr);
        ::_exit(0);
    });
    return consumer.exit_code();
}

TEST_CASE("peek decodes record runs one record at a time, from a resume point inside a run") {
    const std::string name = unique_name("runs");
    write_head_and_run_of_five(name);

    ChannelInfo before = shmchan::inspect(name);
    Run peek = run_inspect({"peek", name});
    CHECK_MESSAGE(peek.code == 0, peek.err);
    std::vector<std::string> shown = record_lines(peek.out);
    REQUIRE_MESSAGE(shown.size() == 6, peek.out);
    CHECK(shown[0] == kHeadLine);
    for (std::uint32_t i = 0; i < 5; ++i) CHECK_MESSAGE(shown[1 + i] == run_record_line(i, "(run of 5)"), peek.out);
    CHECK(same_positions(before, shmchan::inspect(name)));

    // --count counts the records of a run one by one.
    Run three = run_inspect({"peek", name, "--count", "3"});
    CHECK_MESSAGE(three.code == 0, three.err);
    shown = record_lines(three.out);
    REQUIRE_MESSAGE(shown.size() == 3, three.out);
    CHECK(shown[0] == kHeadLine);
    CHECK(shown[1] == run_record_line(0, "(run of 5)"));
    CHECK(shown[2] == run_record_line(1, "(run of 5)"));
    CHECK(contains(three.out, "(--count 3 reached)"));

    // A consumer read the head and two records of the run, and died while on the second: its
    // successor resumes at that record, inside the run frame and not 8-aligned. peek starts
    // there too.
    REQUIRE(read_and_die(name, {"head", "run record 0", "run record 1"}) == 0);
    CHECK(shmchan::inspect(name).resume_word == layout::make_tagged_word(0, run_record_offset(1)));
    CHECK(run_record_offset(1) % layout::kFrameAlignment != 0);
    Run resumed = run_inspect({"peek", name});
    CHECK_MESSAGE(resumed.code == 0, resumed.err);
    CHECK_MESSAGE(contains(resumed.out, "resuming at segment 0 offset 76\n"
                                        "resume point @0:76 is inside a run: 4 records of 12 bytes left in it\n"),
                  resumed.out);
    shown = record_lines(resumed.out);
    REQUIRE_MESSAGE(shown.size() == 4, resumed.out);
    for (std::uint32_t i = 0; i < 4; ++i) CHECK_MESSAGE(shown[i] == run_record_line(1 + i, "(rest of a run)"), resumed.out);
    Run resumed_two = run_inspect({"peek", name, "--count", "2"});
    CHECK_MESSAGE(resumed_two.code == 0, resumed_two.err);
    shown = record_lines(resumed_two.out);
    REQUIRE_MESSAGE(shown.size() == 2, resumed_two.out);
    CHECK(shown[0] == run_record_line(1, "(rest of a run)"));
    CHECK(shown[1] == run_record_line(2, "(rest of a run)"));

    // Its successor takes that record again, finishes it, reads the third and dies on it: the
    // resume point is the third record's start, 8-aligned but inside the run (not a frame
    // header: a decoder that took it for one would read record bytes as a header).
    REQUIRE(read_and_die(name, {"run record 1", "run record 2"}) == 0);
    CHECK(shmchan::inspect(name).resume_word == layout::make_tagged_word(0, run_record_offset(2)));
    resumed = run_inspect({"peek", name});
    CHECK_MESSAGE(resumed.code == 0, resumed.err);
    CHECK(contains(resumed.out, "resume point @0:88 is inside a run: 3 records of 12 bytes left in it\n"));
    shown = record_lines(resumed.out);
    REQUIRE_MESSAGE(shown.size() == 3, resumed.out);
    for (std::uint32_t i = 0; i < 3; ++i) CHECK_MESSAGE(shown[i] == run_record_line(2 + i, "(rest of a run)"), resumed.out);

    // A resume point inside the run that is no record's start: a clear problem, exit 1.
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke64(offsetof(layout::ChannelHeader, consumers) + offsetof(layout::ConsumerSlot, position) +
                        offsetof(layout::ConsumerLine, resume_point),
                    layout::make_tagged_word(0, run_record_offset(2) + 1));
    }
    Run misplaced = run_inspect({"peek", name});
    CHECK(misplaced.code == 1);
    CHECK_MESSAGE(contains(misplaced.err, "resume offset 89 of segment 0 is neither a frame's start nor a record's start"),
                  misplaced.err);
    CHECK(record_lines(misplaced.out).empty());
}

TEST_CASE("peek reports a corrupt record run header, exit 1, never a crash") {
    const std::string name = unique_name("badrun");
    write_head_and_run_of_five(name);
    const std::size_t payload = layout::kHeaderBytes + layout::kSegmentHeaderBytes;  // segment 0's
    const std::uint64_t frame = kRunFrameOffset;
    MappedFile file(path_of(name));
    REQUIRE(file.ok());
    REQUIRE(file.peek32(payload + frame + offsetof(layout::FrameHeader, kind)) ==
            static_cast<std::uint32_t>(layout::FrameKind::record_run));  // kind 4, event_type 0
    const std::size_t run_header = payload + frame + layout::kFrameHeaderBytes;
    REQUIRE(file.peek32(run_header + offsetof(layout::RunHeader, record_size)) == 12);
    REQUIRE(file.peek32(run_header + offsetof(layout::RunHeader, count)) == 5);

    // A count enlarged so that the records no longer fit the frame (nor the segment).
    file.poke32(run_header + offsetof(layout::RunHeader, count), 0x10000000u);
    Run bad = run_inspect({"peek", name});
    CHECK(bad.code == 1);
    CHECK_MESSAGE(contains(bad.err, "record run at @0:" + std::to_string(frame)), bad.err);
    CHECK(contains(bad.err, "268435456 records of 12 bytes) does not fit"));
    CHECK(lines_of(bad.err).size() == 1);
    CHECK(record_lines(bad.out) == std::vector<std::string>{kHeadLine});  // what precedes it is shown
    CHECK_MESSAGE(contains(bad.out, "frame @0:16: record run of 100 bytes, 268435456 records of 12 bytes: not decoded\n"),
                  bad.out);

    // One record more, the frame's length grown to match: the frame now claims bytes beyond the
    // segment's committed ones.
    const std::size_t frame_length = payload + frame + offsetof(layout::FrameHeader, length);
    const std::uint32_t length = file.peek32(frame_length);
    file.poke32(run_header + offsetof(layout::RunHeader, count), 6);
    file.poke32(frame_length, length + 12);
    bad = run_inspect({"peek", name});
    CHECK(bad.code == 1);
    CHECK_MESSAGE(contains(bad.err, "of " + std::to_string(length + 12) + " bytes (6 records of 12 bytes) does not fit"),
                  bad.err);
    file.poke32(frame_length, length);

    // A record size of 0, and one that is larger than the frame: the same.
    file.poke32(run_header + offsetof(layout::RunHeader, count), 5);
    file.poke32(run_header + offsetof(layout::RunHeader, record_size), 0);
    bad = run_inspect({"peek", name});
    CHECK(bad.code == 1);
    CHECK_MESSAGE(contains(bad.err, "(5 records of 0 bytes) does not fit"), bad.err);
    file.poke32(run_header + offsetof(layout::RunHeader, record_size), 13);
    bad = run_inspect({"peek", name});
    CHECK(bad.code == 1);
    CHECK_MESSAGE(contains(bad.err, "(5 records of 13 bytes) does not fit"), bad.err);

    // Restored, it decodes again.
    file.poke32(run_header + offsetof(layout::RunHeader, record_size), 12);
    Run good = run_inspect({"peek", name});
    CHECK_MESSAGE(good.code == 0, good.err);
    CHECK(record_lines(good.out).size() == 6);
}

}  // TEST_SUITE
