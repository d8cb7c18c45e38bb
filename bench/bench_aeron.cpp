// SPDX-License-Identifier: Apache-2.0
// shm-bench: Aeron IPC through its C client (aeronc.h). The media driver (aeronmd, threading
// mode SHARED, pinned to the producer's core) is started and stopped by shm-bench
// (shm_bench.cpp, start_aeron_driver); each side here is an Aeron client of it.
// Stream: an exclusive publication on `aeron:ipc` (`aeron:ipc?mtu=65504` for records larger than
// the default MTU allows in one frame, so that every record is one frame, claimed whole); the
// producer claims each record in the log buffer with try_claim(), writes every word of it in
// place and commits it; the consumer busy-polls the subscription, and its fragment handler reads
// every word of each record in place into the checksum. Ping-pong: one publication and one
// subscription each way. A message of kEndBytes ends the stream. The clients pre-touch the log
// buffers they map (Aeron's own option), so the first pass over the 64 MiB terms is not timed
// page faults.
#include <aeronc.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "bench/bench_common.hpp"

namespace bench {

namespace {

constexpr std::size_t kEndBytes = 4;   // records are multiples of 8 bytes: a 4-byte message ends the stream
constexpr std::size_t kDefaultMtuPayload = 1408 - 32;  // the default MTU less the data frame header
constexpr std::int64_t kStallNs = 5'000'000'000;       // a row must not hang the run

std::string aerr(const std::string& what) { return what + ": " + aeron_errmsg(); }

void nap_1ms() {
    timespec ts{0, 1'000'000};
    ::nanosleep(&ts, nullptr);
}

struct Client {
    aeron_context_t* context = nullptr;
    aeron_t* aeron = nullptr;
    ~Client() {
        if (aeron) aeron_close(aeron);  // closes its publications and subscriptions
        if (context) aeron_context_close(context);
    }
};

// What the fragment handler sees: the checksum of every record and the end marker.
struct Receiver {
    Summer sum;
    std::uint64_t record_bytes;
    std::uint64_t received = 0;
    bool ended = false;
    std::size_t bad_length = 0;  // nonzero: a message of an unexpected size
};

void on_fragment(void* clientd, const std::uint8_t* buffer, std::size_t length, aeron_header_t*) {
    auto* r = static_cast<Receiver*>(clientd);
    if (length == r->record_bytes) {
        r->sum.feed(reinterpret_cast<const std::byte*>(buffer), length);
        ++r->received;
    } else if (length == kEndBytes) {
        r->ended = true;
    } else {
        r->bad_length = length;
    }
}

// Waits (at most 10 s) for an asynchronous add to complete; false with the error set.
template <class T, class Async, class Poll>
bool await_added(Ctx& ctx, T** out, Async* async, Poll poll, const char* what) {
    const std::int64_t until = now_ns() + 10'000'000'000;
    for (;;) {
        const int r = poll(out, async);
        if (r == 1) return true;
        if (r < 0) return ctx.fail(aerr(what)), false;
        if (now_ns() > until) return ctx.fail(std::string(what) + ": not done within 10 s"), false;
        nap_1ms();
    }
}

}  // namespace

void aeron_side(Ctx& ctx, const std::string& aeron_dir) {
    const Spec& s = *ctx.spec;
    const bool stream = s.pattern == Pattern::stream;
    // A stream id per row (and one per direction of a ping-pong), from the row's unique name.
    const auto base_id = static_cast<std::int32_t>((std::hash<std::string>{}(s.name) & 0x3FFFFFFEu) + 2);
    const std::string uri = s.record_bytes > kDefaultMtuPayload ? "aeron:ipc?mtu=65504" : "aeron:ipc";

    Client c;
    if (aeron_context_init(&c.context) < 0) return ctx.fail(aerr("aeron_context_init"));
    aeron_context_set_dir(c.context, aeron_dir.c_str());
    aeron_context_set_pre_touch_mapped_memory(c.context, true);
    if (aeron_init(&c.aeron, c.context) < 0) return ctx.fail(aerr("aeron_init"));
    if (aeron_start(c.aeron) < 0) return ctx.fail(aerr("aeron_start (is the media driver running?)"));

    // Stream: a publishes on base_id, b subscribes. Ping-pong: a publishes pings on base_id and
    // subscribes to pongs on base_id + 1, b the reverse.
    aeron_exclusive_publication_t* pub = nullptr;
    aeron_subscription_t* sub = nullptr;
    const bool publishes = !stream || ctx.is_a;
    const bool subscribes = !stream || !ctx.is_a;
    if (publishes) {
        const std::int32_t id = base_id + (ctx.is_a ? 0 : 1);
        aeron_async_add_exclusive_publication_t* async = nullptr;
        if (aeron_async_add_exclusive_publication(&async, c.aeron, uri.c_str(), id) < 0)
            return ctx.fail(aerr("aeron_async_add_exclusive_publication"));
        if (!await_added(ctx, &pub, async, aeron_async_add_exclusive_publication_poll, "add exclusive publication")) return;
    }
    if (subscribes) {
        const std::int32_t id = base_id + (ctx.is_a ? 1 : 0);
        aeron_async_add_subscription_t* async = nullptr;
        if (aeron_async_add_subscription(&async, c.aeron, uri.c_str(), id, nullptr, nullptr, nullptr, nullptr) < 0)
            return ctx.fail(aerr("aeron_async_add_subscription"));
        if (!await_added(ctx, &sub, async, aeron_async_add_subscription_poll, "add subscription")) return;
    }
    // Connected both ways before the clock starts (at most 10 s).
    {
        const std::int64_t until = now_ns() + 10'000'000'000;
        while ((pub && !aeron_exclusive_publication_is_connected(pub)) || (sub && aeron_subscription_image_count(sub) < 1)) {
            if (now_ns() > until) return ctx.fail("aeron: publication and subscription did not connect within 10 s");
            nap_1ms();
        }
    }

    Filler f(s.record_bytes);
    Receiver rx{Summer(s.record_bytes), s.record_bytes};
    const std::size_t rb = s.record_bytes;

    // Claims `length` bytes in the log buffer, spinning while back-pressured (at most 5 s).
    auto claim = [&](std::size_t length, aeron_buffer_claim_t& out) -> bool {
        std::int64_t since = 0;
        for (std::uint64_t tries = 0;; ++tries) {
            const std::int64_t r = aeron_exclusive_publication_try_claim(pub, length, &out);
            if (r > 0) return true;
            if (r != AERON_PUBLICATION_BACK_PRESSURED && r != AERON_PUBLICATION_ADMIN_ACTION)
                return ctx.fail("aeron try_claim: " + std::to_string(r) + " (" + aeron_errmsg() + ")"), false;
            cpu_relax();
            if ((tries & 4095) == 4095) {
                const std::int64_t t = now_ns();
                if (since == 0) since = t;
                else if (t - since > kStallNs) return ctx.fail("aeron: back-pressured for 5 s"), false;
            }
        }
    };
    auto send_end = [&]() -> bool {
        aeron_buffer_claim_t claimed;
        if (!claim(kEndBytes, claimed)) return false;
        std::memset(claimed.data, 0, kEndBytes);
        return aeron_buffer_claim_commit(&claimed) == 0;
    };
    // Busy-polls until the handler has seen `until_received` records or the end; false on an
    // error or a stall.
    auto poll_until = [&](std::uint64_t until_received, std::size_t fragment_limit) -> bool {
        std::int64_t since = 0;
        for (std::uint64_t idle = 0; rx.received < until_received && !rx.ended;) {
            const int n = aeron_subscription_poll(sub, on_fragment, &rx, fragment_limit);
            if (n < 0) return ctx.fail(aerr("aeron_subscription_poll")), false;
            if (rx.bad_length != 0) return ctx.fail("aeron: a message of " + std::to_string(rx.bad_length) + " bytes"), false;
            if (n > 0) {
                idle = 0;
                since = 0;
                continue;
            }
            cpu_relax();
            if ((++idle & 4095) == 4095) {
                const std::int64_t t = now_ns();
                if (since == 0) since = t;
                else if (t - since > kStallNs) return ctx.fail("aeron: no message for 5 s"), false;
            }
        }
        return true;
    };

    ctx.ready_and_wait();
    if (stream) {
        if (ctx.is_a) {
            const std::int64_t deadline = ctx.me->t_begin + s.stream_ns;
            for (;;) {
                if (f.has_whole()) {
                    Filler::Whole local = f.whole_records();  // the fill's state in registers
                    for (int k = 0; k < 64; ++k) {
                        aeron_buffer_claim_t claimed;
                        if (!claim(rb, claimed)) return;
                        local.fill(reinterpret_cast<std::byte*>(claimed.data));
                        aeron_buffer_claim_commit(&claimed);
                    }
                    f.take(local);
                } else {
                    for (int k = 0; k < 64; ++k) {
                        aeron_buffer_claim_t claimed;
                        if (!claim(rb, claimed)) return;
                        f.fill(reinterpret_cast<std::byte*>(claimed.data), rb);
                        aeron_buffer_claim_commit(&claimed);
                    }
                }
                if (now_ns() >= deadline) break;
            }
            if (!send_end()) return;
            ctx.finish();
            // Keep the publication until the consumer has read the end (at most 10 s).
            const std::int64_t until = now_ns() + 10'000'000'000;
            while (std::atomic_ref<std::int64_t>(ctx.sh->b.t_end).load(std::memory_order_acquire) == 0 && now_ns() < until) nap_1ms();
        } else {
            if (!poll_until(~std::uint64_t{0}, 256)) return;
            ctx.finish();
        }
    } else if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            aeron_buffer_claim_t claimed;
            if (!claim(rb, claimed)) return false;
            f.fill(reinterpret_cast<std::byte*>(claimed.data), rb);
            aeron_buffer_claim_commit(&claimed);
            if (!poll_until(rx.received + 1, 1)) return false;
            if (rx.ended) return ctx.fail("aeron: the ponger ended the stream"), false;
            return true;
        });
        if (ok) send_end();
        ctx.finish();
        if (!ok) return;
        const std::int64_t until = now_ns() + 10'000'000'000;
        while (std::atomic_ref<std::int64_t>(ctx.sh->b.t_end).load(std::memory_order_acquire) == 0 && now_ns() < until) nap_1ms();
    } else {
        for (;;) {
            if (!poll_until(rx.received + 1, 1)) return;
            if (rx.ended) break;
            aeron_buffer_claim_t claimed;
            if (!claim(rb, claimed)) return;
            f.fill(reinterpret_cast<std::byte*>(claimed.data), rb);
            aeron_buffer_claim_commit(&claimed);
        }
        ctx.finish();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = rx.sum.checksum;
    ctx.me->recv_records = rx.sum.index;
}

std::string aeron_driver_check(const std::string& aeron_dir, long timeout_ms) {
    Client c;
    if (aeron_context_init(&c.context) < 0) return aerr("aeron_context_init");
    aeron_context_set_dir(c.context, aeron_dir.c_str());
    aeron_context_set_driver_timeout_ms(c.context, static_cast<std::uint64_t>(timeout_ms));
    aeron_context_set_use_conductor_agent_invoker(c.context, true);  // no conductor thread
    if (aeron_init(&c.aeron, c.context) < 0) return aerr("aeron_init");
    if (aeron_start(c.aeron) < 0) return aerr("aeron_start");
    return "";
}

}  // namespace bench
