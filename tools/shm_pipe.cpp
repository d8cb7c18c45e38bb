// SPDX-License-Identifier: Apache-2.0
// shm-pipe: a shared-memory channel as a shell pipe.
//
//   producer | shm-pipe send NAME        # copies stdin into channel NAME, then ends the stream
//   shm-pipe recv NAME | consumer        # copies channel NAME to stdout, removes it at the end
//
// Either side may start first (attach creates the channel or opens it). Raw-bytes mode: `send`
// reads standard input straight into the payload of the segment it holds and publishes the
// segment when it is full, at end of input, or as soon as standard input has nothing more to give
// right now (so a live pipeline flows instead of waiting for a full segment). When the ring is
// full, send reads one byte before it waits for a free segment: at end of input it ends the stream
// at once, so input that fits the ring is handed over without a consumer (like a write that fits a
// pipe), and it waits for a consumer only when it has more to give.
//
// The contract (docs: the product brief, "Interfaces that scripts rely on"):
//   exit 0  success (send: the stream is handed over and ended; recv: the stream ended, the
//           channel is removed)
//   exit 1  a runtime failure, with one line "shm-pipe: <cause>" on stderr: the peer died or went
//           away, the channel is corrupt or incompatible, an I/O error, a timeout.
//   exit 2  bad usage (arguments, channel name, geometry).
//   exit 130, 143  interrupted by SIGINT, SIGTERM (128 + the signal, as a shell reports it).
//
// Faults:
//   - send never writes end of stream after a read error, SIGINT or SIGTERM: its Producer detaches
//     without ending the stream, so the consumer sees an abnormal end (peer_died).
//   - send notices a consumer that attached and then died or detached: at once when it waits for
//     a free segment (the channel reports peer_died), and otherwise by checking the consumer's
//     liveness at least every 200 ms while it waits for input (a consumer that never attached is
//     not an error: send fills the ring and waits for one, like a writer on a full pipe).
//   - recv writes every byte published before the producer died, then exits 1.
//   - recv with a closed standard output (EPIPE; SIGPIPE is ignored) exits 1; its Consumer detaches
//     and the producer then sees peer_died.
//   - A leftover under the name (no live process holds it, its stream did not end cleanly: an
//     earlier run crashed, was interrupted, timed out or lost its reader) is replaced by a fresh
//     channel (OnLeftover::fresh), with one line on stderr; --resume continues it
//     (OnLeftover::resume). A peer that was already dead when we attached is not reported: we
//     wait for its replacement (wait_for_peer) as for a first peer; one that attaches after us
//     (or was alive then) and dies is.
// Signals are handled by a flag (no SA_RESTART, so read/poll/write return EINTR) and every wait
// is sliced into <= 200 ms pieces that re-check it, so Ctrl-C takes effect within 200 ms.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "channels/channel.hpp"
#include "tools/cli.hpp"
#include "tools/sigbus.hpp"
#include "channels/records.hpp"
#include "shm/error.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// The slice of every wait: the bound on noticing a signal, and on noticing a dead consumer while
// send waits for input.
constexpr auto kSlice = 200ms;

volatile sig_atomic_t g_signal = 0;

extern "C" void on_signal(int signal_number) { g_signal = signal_number; }


void install_signal_handlers() {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocking read/poll/write returns EINTR
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, nullptr);  // a closed stdout is EPIPE from write(2)
}

bool interrupted() { return g_signal != 0; }

int fail(const std::string& message, int code = kExitFailure) {
    std::fprintf(stderr, "shm-pipe: %s\n", message.c_str());
    return code;
}

// 128 + the signal's number, as a shell reports a command a signal ended: 130 for SIGINT, 143
// for SIGTERM.
int fail_interrupted() {
    int signal_number = g_signal;
    return fail(std::string("interrupted by ") + (signal_number == SIGTERM ? "SIGTERM" : "SIGINT"),
                128 + (signal_number == SIGTERM ? SIGTERM : SIGINT));
}

struct Options {
    std::string name;
    std::optional<std::uint64_t> segment_size;
    std::optional<std::uint32_t> segments;
    std::string wait = "hybrid";
    std::optional<double> timeout_seconds;
    bool lines = false;
    bool resume = false;
};

std::chrono::nanoseconds timeout_of(const Options& options) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(*options.timeout_seconds * 1e9));
}

std::string seconds_text(double seconds) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%g s", seconds);
    return buffer;
}

// --- leftovers and peers --------------------------------------------------------------------------

// The peer's attach count when we attached, not counting a live peer: a peer that was already
// dead then (a leftover continued with --resume) is waited for like a first one, not reported as
// gone; a peer that attaches after it (or was alive) and then dies is.
std::uint64_t g_peer_baseline = 0;

std::uint64_t peer_baseline(const shmchan::ChannelInfo::Side& peer) {
    return peer.alive && peer.attach_count > 0 ? peer.attach_count - 1 : peer.attach_count;
}

// --lines on one side only: the side that opens second is refused (framing mismatch) and marks
// the channel; the waiting side's library wait then returns incompatible with the reason, and a
// send that waits for input looks at the mark itself (the refusal count it saw at attach).
std::uint32_t g_refusals_seen = 0;

int fail_incompatible(const std::string& error) {
    return fail(error + " (give --lines to both sides or to neither)");
}

std::string framing_text(std::uint32_t framing) { return framing == 2 ? "records (--lines)" : "raw bytes"; }

// send, while it waits for input: was a would-be consumer refused since we attached?
std::optional<int> consumer_refused(const std::string& name, const shmchan::ChannelInfo& info) {
    if (info.framing_refusals == g_refusals_seen || (info.refused_framing & 0x100) != 0) return std::nullopt;
    return fail_incompatible("channel " + name + ": a consumer was refused: it asked for " +
                             framing_text(info.refused_framing & 0xff) + ", the channel carries " +
                             framing_text(static_cast<std::uint32_t>(info.framing)));
}

// attach() removed a leftover (default, without --resume): one line saying so.
void report_leftover(const std::string& name, const std::string& discarded) {
    if (discarded.empty()) return;
    std::fprintf(stderr,
                 "shm-pipe: channel %s was left over by an earlier run that did not end its stream (%s): "
                 "starting fresh (--resume continues it)\n",
                 name.c_str(), discarded.c_str());
}

// --- send ----------------------------------------------------------------------------------------

// A consumer attached since we did (or was attached then) and is gone now. A channel that never
// had a consumer is not an error: send waits for one.
bool consumer_went_away(const shmchan::Producer& producer) {
    if (producer.consumer_alive()) return false;
    return producer.info().consumer.attach_count > g_peer_baseline;
}

int run_send(const Options& options, const shmchan::ChannelOptions& channel_options) {
    auto producer = shmchan::Producer::attach(options.name, channel_options);
    report_leftover(options.name, producer.discarded_leftover());
    g_peer_baseline = peer_baseline(producer.info().consumer);
    g_refusals_seen = producer.info().framing_refusals;
    const std::string& name = options.name;
    auto consumer_gone = [&] { return fail("consumer of channel " + name + " died or went away"); };

    shmchan::WritableSegment segment;
    bool held = false;           // a segment is acquired and not yet published
    std::uint32_t filled = 0;    // bytes of the held segment's payload read so far
    auto last_liveness_check = Clock::now();

    auto acquire_failed = [&](shmchan::Status status) -> int {
        if (status == shmchan::Status::peer_died) return consumer_gone();
        if (status == shmchan::Status::incompatible) return fail_incompatible(producer.last_error());
        if (status == shmchan::Status::corrupt) {
            return fail("channel " + name + " is corrupt: " + producer.last_error());
        }
        return fail("channel " + name + ": acquire failed (" + shmchan::to_string(status) + "): " +
                    producer.last_error());
    };

    // Waits for a free segment in slices (signals, --timeout). Returns an exit code on failure.
    auto wait_for_segment = [&]() -> std::optional<int> {
        std::optional<Clock::time_point> deadline;
        if (options.timeout_seconds) deadline = Clock::now() + timeout_of(options);
        while (true) {
            if (interrupted()) return fail_interrupted();
            auto slice = std::chrono::nanoseconds(kSlice);
            if (deadline) {
                auto left = *deadline - Clock::now();
                if (left <= Clock::duration::zero()) {
                    return fail("timed out after " + seconds_text(*options.timeout_seconds) +
                                " waiting for a consumer of channel " + name);
                }
                slice = std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
            }
            switch (auto status = producer.acquire_for(segment, slice)) {
                case shmchan::Status::ok:
                    held = true;
                    filled = 0;
                    return std::nullopt;
                case shmchan::Status::timed_out:
                case shmchan::Status::interrupted:  // the loop head acts on the signal
                case shmchan::Status::would_block:
                    continue;
                case shmchan::Status::peer_died:
                    if (consumer_went_away(producer)) return acquire_failed(status);
                    static_cast<void>(producer.wait_for_peer(slice));  // a new consumer; the next call reports the rest
                    continue;
                default:
                    return acquire_failed(status);
            }
        }
    };

    auto publish = [&]() -> std::optional<int> {
        auto status = producer.publish(filled);
        held = false;
        filled = 0;
        if (status == shmchan::Status::ok) return std::nullopt;
        if (status == shmchan::Status::peer_died) return consumer_gone();
        return fail("channel " + name + ": publish failed (" + shmchan::to_string(status) + "): " +
                    producer.last_error());
    };

    // End of input: hand over what the held segment has, then end the stream.
    auto finish = [&]() -> int {
        if (held && filled > 0) {
            if (auto failed = publish()) return *failed;
        }
        auto status = producer.end_stream();
        if (status != shmchan::Status::ok) {
            return fail("channel " + name + ": cannot end the stream (" + shmchan::to_string(status) +
                        "): " + producer.last_error());
        }
        return kExitOk;
    };

    while (true) {
        // 1. Wait until standard input has something (data or end of input), in slices: a signal
        //    or a consumer that went away ends the wait.
        while (true) {
            if (interrupted()) return fail_interrupted();
            if (Clock::now() - last_liveness_check >= kSlice) {
                last_liveness_check = Clock::now();
                if (consumer_went_away(producer)) return consumer_gone();
                if (auto refused = consumer_refused(name, producer.info())) return *refused;
            }
            pollfd input{STDIN_FILENO, POLLIN, 0};
            int ready = ::poll(&input, 1, static_cast<int>(kSlice / 1ms));
            if (ready > 0) break;  // readable, end of input, or an error that read() will report
            if (ready < 0 && errno != EINTR) {
                return fail(std::string("cannot poll standard input: ") + std::strerror(errno));
            }
        }

        // 2. A segment to read into. A free one at once is the common case. When the ring is full
        //    (backpressure, or no consumer yet), first find out whether the input has ended, by
        //    reading one byte: if so, the stream ends now without waiting for a credit (a writer
        //    whose data fits the pipe does not wait for the reader). Otherwise wait for a segment
        //    and put that byte first.
        if (!held) {
            auto status = producer.try_acquire(segment);
            if (status == shmchan::Status::ok) {
                held = true;
                filled = 0;
            } else if (status == shmchan::Status::would_block) {
                std::byte first{};
                ssize_t got = ::read(STDIN_FILENO, &first, 1);
                if (got < 0) {
                    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
                    return fail(std::string("error reading standard input: ") + std::strerror(errno));
                }
                if (got == 0) return finish();
                if (auto failed = wait_for_segment()) return *failed;
                segment.payload[0] = first;
                filled = 1;
            } else {
                return acquire_failed(status);
            }
        }

        // 3. Read until the payload is full, input runs dry for now, or input ends.
        while (true) {
            if (interrupted()) return fail_interrupted();
            auto room = segment.payload.size() - filled;
            ssize_t got = ::read(STDIN_FILENO, segment.payload.data() + filled, room);
            if (got < 0) {
                if (errno == EINTR) continue;  // the loop head checks the signal flag
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    // A non-blocking stdin with nothing for now: hand over what we have.
                    if (filled > 0) {
                        if (auto failed = publish()) return *failed;
                    }
                    break;
                }
                return fail(std::string("error reading standard input: ") + std::strerror(errno));
            }
            if (got == 0) return finish();
            filled += static_cast<std::uint32_t>(got);
            if (filled == segment.payload.size()) {
                if (auto failed = publish()) return *failed;
                break;
            }
            pollfd input{STDIN_FILENO, POLLIN, 0};
            int ready = ::poll(&input, 1, 0);
            if (ready == 0 || (ready < 0 && errno != EINTR)) {
                // Nothing more right now: publish so that a live pipeline flows.
                if (auto failed = publish()) return *failed;
                break;
            }
        }
    }
}

// --- recv ----------------------------------------------------------------------------------------

// A producer attached since we did (or was attached then) and is gone now.
bool producer_went_away(const shmchan::Consumer& consumer) {
    if (consumer.producer_alive()) return false;
    return consumer.info().producer.attach_count > g_peer_baseline;
}

enum class WriteResult { ok, interrupted, closed, failed };

WriteResult write_all(const std::byte* data, std::size_t size, int& error) {
    while (size > 0) {
        ssize_t wrote = ::write(STDOUT_FILENO, data, size);
        if (wrote < 0) {
            if (errno == EINTR) {
                if (interrupted()) return WriteResult::interrupted;
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking stdout: wait for room
                pollfd output{STDOUT_FILENO, POLLOUT, 0};
                ::poll(&output, 1, static_cast<int>(kSlice / 1ms));
                if (interrupted()) return WriteResult::interrupted;
                continue;
            }
            error = errno;
            return errno == EPIPE ? WriteResult::closed : WriteResult::failed;
        }
        data += wrote;
        size -= static_cast<std::size_t>(wrote);
    }
    return WriteResult::ok;
}

int run_recv(const Options& options, const shmchan::ChannelOptions& channel_options) {
    auto consumer = shmchan::Consumer::attach(options.name, channel_options);
    report_leftover(options.name, consumer.discarded_leftover());
    g_peer_baseline = peer_baseline(consumer.info().producer);
    const std::string& name = options.name;
    shmchan::ReadableSegment segment;

    std::optional<Clock::time_point> deadline;
    auto arm_deadline = [&] {
        if (options.timeout_seconds) deadline = Clock::now() + timeout_of(options);
    };
    arm_deadline();

    while (true) {
        if (interrupted()) return fail_interrupted();
        auto slice = std::chrono::nanoseconds(kSlice);
        if (deadline) {
            auto left = *deadline - Clock::now();
            if (left <= Clock::duration::zero()) {
                return fail("timed out after " + seconds_text(*options.timeout_seconds) +
                            " waiting for the producer of channel " + name);
            }
            slice = std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
        }
        switch (consumer.read_for(segment, slice)) {
            case shmchan::Status::ok: {
                int error = 0;
                switch (write_all(segment.payload.data(), segment.payload.size(), error)) {
                    case WriteResult::ok:
                        break;
                    case WriteResult::interrupted:
                        return fail_interrupted();
                    case WriteResult::closed:
                        return fail("standard output closed (" + std::string(std::strerror(error)) +
                                    "): stopped receiving channel " + name);
                    case WriteResult::failed:
                        return fail("error writing standard output: " + std::string(std::strerror(error)));
                }
                auto status = consumer.release();
                if (status != shmchan::Status::ok) {
                    return fail("channel " + name + ": release failed (" + shmchan::to_string(status) +
                                "): " + consumer.last_error());
                }
                arm_deadline();
                break;
            }
            case shmchan::Status::timed_out:
            case shmchan::Status::interrupted:  // the loop head acts on the signal
            case shmchan::Status::would_block:
                break;
            case shmchan::Status::end_of_stream:
                consumer.remove_channel();
                return kExitOk;
            case shmchan::Status::peer_died:
                if (producer_went_away(consumer)) return fail("producer of channel " + name + " died before end of stream");
                static_cast<void>(consumer.wait_for_peer(slice));  // a new producer; the next call reports the rest
                break;
            case shmchan::Status::corrupt:
                return fail("channel " + name + " is corrupt: " + consumer.last_error());
            case shmchan::Status::incompatible:
                return fail_incompatible(consumer.last_error());
            default:
                return fail("channel " + name + ": read failed: " + consumer.last_error());
        }
    }
}


// --- --lines: one record per line, through the records layer -------------------------------------

// Waits, in slices, for an operation that can wait (write a record, end the stream): signals,
// --timeout and a consumer that went away end the wait. `attempt(slice)` returns the status of
// one timed try.
template <class Attempt>
int wait_in_slices(const Options& options, shmchan::RecordWriter& writer, Attempt&& attempt) {
    const std::string& name = options.name;
    std::optional<Clock::time_point> deadline;
    if (options.timeout_seconds) deadline = Clock::now() + timeout_of(options);
    while (true) {
        if (interrupted()) return fail_interrupted();
        auto slice = std::chrono::nanoseconds(kSlice);
        if (deadline) {
            auto left = *deadline - Clock::now();
            if (left <= Clock::duration::zero()) {
                return fail("timed out after " + seconds_text(*options.timeout_seconds) +
                            " waiting for a consumer of channel " + name);
            }
            slice = std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
        }
        switch (auto status = attempt(slice)) {
            case shmchan::Status::ok:
                return kExitOk;
            case shmchan::Status::timed_out:
            case shmchan::Status::interrupted:  // the loop head acts on the signal
            case shmchan::Status::would_block:
                if (consumer_went_away(writer.producer())) {
                    return fail("consumer of channel " + name + " died or went away");
                }
                continue;
            case shmchan::Status::peer_died:
                if (consumer_went_away(writer.producer())) return fail("consumer of channel " + name + " died or went away");
                static_cast<void>(writer.producer().wait_for_peer(slice));  // a new consumer; the next call reports the rest
                continue;
            case shmchan::Status::too_large:
                return fail("a line of channel " + name + " is too long: " + writer.last_error());
            case shmchan::Status::incompatible:
                return fail_incompatible(writer.last_error());
            default:
                return fail("channel " + name + ": write failed (" + shmchan::to_string(status) + "): " +
                            writer.last_error());
        }
    }
}

// The first '\n' in [p, end), or nullptr. Lines are mostly short: eight bytes at a time in
// registers for the first 64 bytes (a call to memchr per short line costs more than the line),
// then memchr for the rest of a long one.
const char* find_newline(const char* p, const char* end) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
    constexpr std::uint64_t kNewlines = kOnes * static_cast<unsigned char>('\n');
    const char* const words_end = end - p > 64 ? p + 64 : end;
    for (; words_end - p >= 8; p += 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        const std::uint64_t x = word ^ kNewlines;  // a zero byte where word has '\n'
        // The lowest set bit marks the first zero byte (a borrow can only mark bytes above it).
        const std::uint64_t zero = (x - kOnes) & ~x & kHighs;
        if (zero != 0) {
            static_assert(std::endian::native == std::endian::little, "the first byte is the lowest");
            return p + (std::countr_zero(zero) >> 3);
        }
    }
    if (p == end) return nullptr;
    return static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
}

int run_send_lines(const Options& options, const shmchan::ChannelOptions& channel_options) {
    auto writer = shmchan::RecordWriter::attach(options.name, channel_options);
    report_leftover(options.name, writer.producer().discarded_leftover());
    g_peer_baseline = peer_baseline(writer.producer().info().consumer);
    g_refusals_seen = writer.producer().info().framing_refusals;
    const std::string& name = options.name;
    std::vector<char> input(256 * 1024);
    std::string pending;  // a line that goes on past the input buffer
    auto last_liveness_check = Clock::now();

    // A line whose try_write() returned `status` (not ok): wait for room, or report why not.
    auto write_line_slow = [&](std::string_view line, shmchan::Status status) -> int {
        auto bytes = std::as_bytes(std::span(line.data(), line.size()));
        if (status == shmchan::Status::invalid_call) {
            // Larger than the whole ring: only the blocking write can carry it.
            status = writer.write(bytes);
            if (status == shmchan::Status::ok) return kExitOk;
            if (status == shmchan::Status::peer_died) return fail("consumer of channel " + name + " died or went away");
            if (status == shmchan::Status::interrupted) return fail_interrupted();
            return fail("channel " + name + ": write failed (" + shmchan::to_string(status) + "): " + writer.last_error());
        }
        if (status == shmchan::Status::too_large) {
            return fail("a line of " + std::to_string(line.size()) + " bytes is longer than channel " + name +
                        "'s maximum record size (" + std::to_string(writer.max_record_bytes()) + ")");
        }
        if (status != shmchan::Status::would_block) {
            return fail("channel " + name + ": write failed (" + shmchan::to_string(status) + "): " + writer.last_error());
        }
        return wait_in_slices(options, writer, [&](std::chrono::nanoseconds slice) { return writer.write_for(bytes, slice); });
    };

    // One line: try_write() (inline while the held segment has room) and the slow path when not.
    auto write_line = [&](std::string_view line) -> int {
        const auto status = writer.try_write(std::as_bytes(std::span(line.data(), line.size())));
        if (status == shmchan::Status::ok) [[likely]] return kExitOk;
        return write_line_slow(line, status);
    };

    auto finish = [&]() -> int {
        if (!pending.empty()) {
            if (int code = write_line(pending); code != kExitOk) return code;
        }
        return wait_in_slices(options, writer, [&](std::chrono::nanoseconds slice) { return writer.end_stream_for(slice); });
    };

    while (true) {
        if (interrupted()) return fail_interrupted();
        // Nothing to read right now: let a parked consumer see what is committed, then wait for
        // input in slices (signals, a consumer that went away).
        pollfd input_ready{STDIN_FILENO, POLLIN, 0};
        if (::poll(&input_ready, 1, 0) == 0) {
            // A consumer that died or went away is reported by the liveness check below.
            if (auto status = writer.flush(); status != shmchan::Status::ok && status != shmchan::Status::peer_died) {
                return fail("channel " + name + ": flush failed (" + shmchan::to_string(status) + "): " + writer.last_error());
            }
            while (true) {
                if (interrupted()) return fail_interrupted();
                if (Clock::now() - last_liveness_check >= kSlice) {
                    last_liveness_check = Clock::now();
                    if (consumer_went_away(writer.producer())) return fail("consumer of channel " + name + " died or went away");
                    if (auto refused = consumer_refused(name, writer.producer().info())) return *refused;
                }
                int ready = ::poll(&input_ready, 1, static_cast<int>(kSlice / 1ms));
                if (ready > 0) break;
                if (ready < 0 && errno != EINTR) return fail(std::string("cannot poll standard input: ") + std::strerror(errno));
            }
        }
        ssize_t got = ::read(STDIN_FILENO, input.data(), input.size());
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return fail(std::string("error reading standard input: ") + std::strerror(errno));
        }
        if (got == 0) return finish();
        const char* at = input.data();
        const char* const end = at + got;
        while (at != end) {
            const char* newline = find_newline(at, end);
            if (newline == nullptr) {
                const auto rest = static_cast<std::size_t>(end - at);
                if (pending.size() + rest > writer.max_record_bytes()) {
                    return fail("a line longer than channel " + name + "'s maximum record size (" +
                                std::to_string(writer.max_record_bytes()) + " bytes)");
                }
                pending.append(at, rest);
                break;
            }
            const std::string_view line(at, static_cast<std::size_t>(newline - at));
            if (pending.empty()) [[likely]] {
                const auto status = writer.try_write(std::as_bytes(std::span(line.data(), line.size())));
                if (status != shmchan::Status::ok) [[unlikely]] {
                    if (int code = write_line_slow(line, status); code != kExitOk) return code;
                }
            } else {
                pending.append(line);
                int code = write_line(pending);
                pending.clear();
                if (code != kExitOk) return code;
            }
            at = newline + 1;
        }
    }
}

// Copies a line of n bytes: lines are mostly short, and a call to memcpy costs more than such a
// copy. Up to 16 bytes, two loads that may overlap and stay inside [from, from + n).
void copy_line(std::byte* to, const std::byte* from, std::size_t n) {
    if (n > 16) {
        std::memcpy(to, from, n);
    } else if (n >= 8) {
        std::uint64_t head, tail;
        std::memcpy(&head, from, 8);
        std::memcpy(&tail, from + n - 8, 8);
        std::memcpy(to, &head, 8);
        std::memcpy(to + n - 8, &tail, 8);
    } else if (n >= 4) {
        std::uint32_t head, tail;
        std::memcpy(&head, from, 4);
        std::memcpy(&tail, from + n - 4, 4);
        std::memcpy(to, &head, 4);
        std::memcpy(to + n - 4, &tail, 4);
    } else if (n != 0) {
        to[0] = from[0];
        to[n / 2] = from[n / 2];
        to[n - 1] = from[n - 1];
    }
}

int run_recv_lines(const Options& options, const shmchan::ChannelOptions& channel_options) {
    auto reader = shmchan::RecordReader::attach(options.name, channel_options);
    report_leftover(options.name, reader.consumer().discarded_leftover());
    g_peer_baseline = peer_baseline(reader.consumer().info().producer);
    const std::string& name = options.name;
    // Lines are gathered here and written to stdout in large pieces (a write(2) per line would
    // be most of the cost); a line longer than the buffer goes straight from the record's bytes.
    constexpr std::size_t kOutputBytes = 256 * 1024;
    const std::unique_ptr<std::byte[]> output(new std::byte[kOutputBytes]);
    std::size_t pending = 0;  // bytes of `output` not yet written
    std::optional<Clock::time_point> deadline;
    auto arm_deadline = [&] {
        if (options.timeout_seconds) deadline = Clock::now() + timeout_of(options);
    };
    arm_deadline();

    auto flush_output = [&]() -> int {
        int error = 0;
        switch (write_all(output.get(), pending, error)) {
            case WriteResult::ok: pending = 0; return kExitOk;
            case WriteResult::interrupted: return fail_interrupted();
            case WriteResult::closed:
                return fail("standard output closed (" + std::string(std::strerror(error)) + "): stopped receiving channel " + name);
            case WriteResult::failed: return fail("error writing standard output: " + std::string(std::strerror(error)));
        }
        return kExitFailure;
    };

    shmchan::Record record;
    bool received = false;  // a record or event since the deadline was armed
    while (true) {
        if (interrupted()) return fail_interrupted();
        auto status = reader.try_read(record);
        if (status == shmchan::Status::would_block) {
            // Nothing for now: hand what we have to stdout, then wait in slices. --timeout
            // counts from the last record.
            if (pending != 0) {
                if (int code = flush_output(); code != kExitOk) return code;
            }
            if (received) {
                arm_deadline();
                received = false;
            }
            auto slice = std::chrono::nanoseconds(kSlice);
            if (deadline) {
                auto left = *deadline - Clock::now();
                if (left <= Clock::duration::zero()) {
                    return fail("timed out after " + seconds_text(*options.timeout_seconds) + " waiting for the producer of channel " + name);
                }
                slice = std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
            }
            status = reader.read_for(record, slice);
            if (status == shmchan::Status::timed_out || status == shmchan::Status::interrupted) continue;
        }
        switch (status) {
            case shmchan::Status::ok:
                if (record.kind == shmchan::RecordKind::record) {
                    const std::size_t size = record.bytes.size();
                    if (pending + size + 1 > kOutputBytes && pending != 0) {
                        if (int code = flush_output(); code != kExitOk) return code;
                    }
                    if (size + 1 > kOutputBytes) {
                        // A long line: straight from the record's bytes.
                        int error = 0;
                        if (write_all(record.bytes.data(), size, error) != WriteResult::ok) {
                            return fail("error writing standard output: " + std::string(std::strerror(error)));
                        }
                    } else {
                        copy_line(output.get() + pending, record.bytes.data(), size);
                        pending += size;
                    }
                    output[pending++] = std::byte{'\n'};
                }
                received = true;
                break;
            case shmchan::Status::record_lost:
                std::fprintf(stderr, "shm-pipe: a record of %llu bytes was lost when the previous consumer of channel %s died\n",
                             static_cast<unsigned long long>(record.lost_bytes), name.c_str());
                break;
            case shmchan::Status::end_of_stream:
                if (int code = flush_output(); code != kExitOk) return code;
                reader.remove_channel();
                return kExitOk;
            case shmchan::Status::peer_died:
                if (int code = flush_output(); code != kExitOk) return code;
                if (producer_went_away(reader.consumer())) return fail("producer of channel " + name + " died before end of stream");
                static_cast<void>(reader.consumer().wait_for_peer(kSlice));  // a new producer; the next call reports the rest
                break;
            case shmchan::Status::corrupt:
                flush_output();
                return fail("channel " + name + " is corrupt: " + reader.last_error());
            case shmchan::Status::incompatible:
                flush_output();
                return fail_incompatible(reader.last_error());
            default:
                flush_output();
                return fail("channel " + name + ": read failed (" + shmchan::to_string(status) + "): " + reader.last_error());
        }
    }
}

void add_common_options(CLI::App& command, Options& options) {
    command.add_option("NAME", options.name, "channel name (letters, digits, '.', '_', '-')")->required();
    command.add_option("--segment-size", options.segment_size,
                       "bytes per segment, a multiple of 4096 (default 32768 when creating; "
                       "an existing channel's when opening)");
    command.add_option("--segments", options.segments, "segments in the ring (default 16 when creating)");
    command.add_option("--wait", options.wait, "wait strategy: spin, hybrid (default) or park")
        ->check(CLI::IsMember({"spin", "hybrid", "park"}));
    command.add_option("--timeout", options.timeout_seconds,
                       "send: the longest wait for a free segment; recv: the longest wait for data "
                       "(seconds; default: no bound)")
        ->check(CLI::Validator(
            [](std::string& text) -> std::string {
                double seconds = 0;
                if (!CLI::detail::lexical_cast(text, seconds) || !(seconds >= 0 && seconds <= 1e9)) {
                    return "must be a number of seconds between 0 and 1e9, not " + text;
                }
                return {};
            },
            "SECONDS"));
    command.add_flag("--resume", options.resume,
                     "continue a channel left over by an earlier run that did not end its stream (a side died "
                     "or gave up) instead of starting fresh: recv reads what it left unread (at least once) "
                     "and waits for a new producer; send continues its stream and waits for a new consumer");
    command.add_flag("--lines", options.lines,
                     "one record per line (the records layer: a long line spans segments); recv writes each "
                     "record and a newline");
}

}  // namespace

// Descriptors 0-2 that were closed at start are opened on /dev/null, so that no file we open
// later lands there (a write to "standard output" must never reach a channel's bytes). Returns
// which of standard input and output were open.
struct StandardStreams {
    bool input_open = true, output_open = true;
};
StandardStreams claim_standard_descriptors() {
    StandardStreams streams;
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        if (fd == STDIN_FILENO) streams.input_open = false;
        if (fd == STDOUT_FILENO) streams.output_open = false;
        int null_fd = ::open("/dev/null", O_RDWR);  // the lowest free descriptor: this one
        if (null_fd >= 0 && null_fd != fd) ::close(null_fd);
    }
    return streams;
}

int main(int argc, char** argv) {
    const StandardStreams streams = claim_standard_descriptors();
    CLI::App app{"shm-pipe: a shared-memory channel as a shell pipe"};
    app.name("shm-pipe");
    app.require_subcommand(1);
    app.failure_message([](const CLI::App* command, const CLI::Error& error) {
        return "shm-pipe: " + CLI::FailureMessage::simple(command, error);
    });
    Options options;
    auto* send = app.add_subcommand("send", "copy standard input into channel NAME, then end the stream");
    auto* recv = app.add_subcommand("recv", "copy channel NAME to standard output until end of stream");
    add_common_options(*send, options);
    add_common_options(*recv, options);

    shmchan::tools::add_standard_flags(app);
    if (auto error = shmchan::tools::command_word_error(app, argc, argv)) {
        std::fprintf(stderr, "%s\n", error->c_str());
        return kExitUsage;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);  // prints the message (or the help)
        return code == 0 ? kExitOk : kExitUsage;
    }

    shmchan::ChannelOptions channel_options;
    channel_options.framing = options.lines ? shmchan::Framing::records : shmchan::Framing::raw_bytes;
    channel_options.on_leftover = options.resume ? shmchan::OnLeftover::resume : shmchan::OnLeftover::fresh;
    if (options.segment_size) {
        if (*options.segment_size > std::numeric_limits<std::uint32_t>::max()) {
            return fail("--segment-size " + std::to_string(*options.segment_size) + " is too large", kExitUsage);
        }
        channel_options.segment_size = static_cast<std::uint32_t>(*options.segment_size);
    }
    if (options.segments) channel_options.segment_count = *options.segments;
    auto strategy = shmchan::wait_strategy_from_string(options.wait);
    if (!strategy) return fail("--wait must be spin, hybrid or park, not " + options.wait, kExitUsage);
    channel_options.wait = *strategy;

    // Before anything is attached or created: a closed stream leaves nothing behind.
    if (send->parsed() && !streams.input_open) {
        return fail("standard input is closed: nothing to send on channel " + options.name);
    }
    if (recv->parsed() && !streams.output_open) {
        return fail("standard output is closed: nowhere to write channel " + options.name);
    }

    install_signal_handlers();
    shmchan::tools::report_sigbus_and_exit("shm-pipe");
    try {
        if (options.lines) {
            return send->parsed() ? run_send_lines(options, channel_options) : run_recv_lines(options, channel_options);
        }
        return send->parsed() ? run_send(options, channel_options) : run_recv(options, channel_options);
    } catch (const shmchan::Error& error) {
        const auto& code = error.code();
        if (code == shmchan::Errc::bad_name || code == shmchan::Errc::bad_options) {
            return fail(error.what(), kExitUsage);
        }
        if (code == shmchan::Errc::framing_mismatch) return fail_incompatible(error.what());
        if (code == shmchan::Errc::stream_ended) {
            return fail("channel " + options.name + " has already ended: receive or remove it first");
        }
        return fail(error.what());
    } catch (const std::exception& error) {
        return fail(error.what());
    }
}
