// SPDX-License-Identifier: Apache-2.0
// shm-bench: Eclipse iceoryx 2.x (Debian's packages), the untyped C++ API: the producer loans a
// chunk, writes the record into it in place and publishes it; the consumer busy-polls take(),
// reads every byte of the chunk in place and releases it. No loss: the publisher waits for a slow
// subscriber (WAIT_FOR_CONSUMER / BLOCK_PRODUCER). A chunk of 1 byte ends the stream. RouDi is
// started by shm-bench with its own config (shm_bench.cpp, start_roudi).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

#include "bench/bench_common.hpp"

namespace bench {

namespace {

iox::capro::ServiceDescription service(const std::string& name, const char* event) {
    return {iox::capro::IdString_t(iox::cxx::TruncateToCapacity, "shm-bench"),
            iox::capro::IdString_t(iox::cxx::TruncateToCapacity, name.c_str()),
            iox::capro::IdString_t(iox::cxx::TruncateToCapacity, event)};
}

}  // namespace

void iceoryx_side(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    const std::string runtime = s.name + (ctx.is_a ? "-a" : "-b");
    {
        // Warnings only; the log manager announces its level on stderr, so hide that line.
        std::fflush(stderr);
        const int saved = ::dup(2);
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 2);
        iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn);
        std::clog.flush();
        std::cerr.flush();
        std::fflush(stderr);
        ::dup2(saved, 2);
        ::close(saved);
        ::close(null);
    }
    iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, runtime.c_str()));
    const bool stream = s.pattern == Pattern::stream;
    const std::uint64_t depth = s.record_bytes >= 1024 * 1024 ? 16 : 64;

    iox::popo::PublisherOptions po;
    po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    iox::popo::SubscriberOptions so;
    so.queueCapacity = depth;
    so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;

    // Stream: a publishes "data", b subscribes. Ping-pong: a publishes "ping" and subscribes to
    // "pong", b the reverse.
    std::optional<iox::popo::UntypedPublisher> pub;
    std::optional<iox::popo::UntypedSubscriber> sub;
    if (stream) {
        if (ctx.is_a) pub.emplace(service(s.name, "data"), po);
        else sub.emplace(service(s.name, "data"), so);
    } else {
        pub.emplace(service(s.name, ctx.is_a ? "ping" : "pong"), po);
        sub.emplace(service(s.name, ctx.is_a ? "pong" : "ping"), so);
    }
    // Wait (at most 10 s) until the connections are made through RouDi.
    const std::int64_t until = now_ns() + 10'000'000'000;
    while ((pub && !pub->hasSubscribers()) || (sub && sub->getSubscriptionState() != iox::SubscribeState::SUBSCRIBED)) {
        if (now_ns() > until) return ctx.fail("iceoryx: publisher and subscriber did not connect within 10 s");
        timespec ts{0, 1'000'000};
        ::nanosleep(&ts, nullptr);
    }

    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    auto send = [&](std::uint32_t size) -> bool {
        for (std::int64_t give_up = 0;;) {
            auto loaned = pub->loan(size, 8);
            if (!loaned.has_error()) {
                auto* p = static_cast<std::byte*>(loaned.value());
                if (size == s.record_bytes) f.fill(p, size);
                pub->publish(loaned.value());
                return true;
            }
            if (give_up == 0) give_up = now_ns() + 5'000'000'000;
            if (now_ns() > give_up) return ctx.fail("iceoryx: loan failed for 5 s"), false;
            cpu_relax();
        }
    };
    // Busy-polls for one chunk: its size (1 = end), or -1 on an error.
    // A stall of 5 s is an error (a row must not hang the run).
    auto receive = [&]() -> long {
        std::int64_t since = 0;
        for (std::uint64_t polls = 0;; ++polls) {
            auto taken = sub->take();
            if (taken.has_error()) {
                if (taken.get_error() == iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) {
                    cpu_relax();
                    if ((polls & 4095) == 4095) {
                        const std::int64_t t = now_ns();
                        if (since == 0) since = t;
                        else if (t - since > 5'000'000'000) {
                            ctx.fail("iceoryx: no chunk for 5 s");
                            return -1;
                        }
                    }
                    continue;
                }
                ctx.fail("iceoryx: take failed (too many chunks held)");
                return -1;
            }
            const void* p = taken.value();
            const std::uint32_t n = iox::mepoo::ChunkHeader::fromUserPayload(p)->userPayloadSize();
            if (n != 1) {
                if (n != s.record_bytes) {
                    sub->release(p);
                    ctx.fail("iceoryx: a chunk of " + std::to_string(n) + " bytes");
                    return -1;
                }
                sum.feed(static_cast<const std::byte*>(p), n);
            }
            sub->release(p);
            return n;
        }
    };
    const auto rb = static_cast<std::uint32_t>(s.record_bytes);
    ctx.ready_and_wait();
    if (stream) {
        if (ctx.is_a) {
            const std::int64_t deadline = ctx.me->t_begin + s.stream_ns;
            for (;;) {
                for (int k = 0; k < 64; ++k) {
                    if (!send(rb)) return;
                }
                if (now_ns() >= deadline) break;
            }
            if (!send(1)) return;
        } else {
            for (;;) {
                const long n = receive();
                if (n < 0) return;
                if (n == 1) break;
            }
        }
        ctx.finish();
    } else if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) { return send(rb) && receive() > 1; });
        if (ok) send(1);
        ctx.finish();
        if (!ok) return;
    } else {
        for (;;) {
            const long n = receive();
            if (n < 0) return;
            if (n == 1) break;
            if (!send(rb)) return;
        }
        ctx.finish();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
}

}  // namespace bench
