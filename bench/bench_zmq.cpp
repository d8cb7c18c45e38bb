// SPDX-License-Identifier: Apache-2.0
// shm-bench: ZeroMQ over ipc:// (libzmq's C API). Stream: PUSH -> PULL; ping-pong: PAIR <-> PAIR.
// The endpoint is a socket file in the run's private temporary directory. The producer copies
// each record into a message (zmq_send); the consumer reads every byte of the received message
// in place (zmq_msg_recv) and closes it. An empty message ends the stream.
#include <sched.h>
#include <zmq.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <string>
#include <vector>

#include "bench/bench_common.hpp"

namespace bench {

namespace {

struct Socket {
    void* ctx = nullptr;
    void* sock = nullptr;
    ~Socket() {
        if (sock) zmq_close(sock);
        if (ctx) zmq_ctx_term(ctx);
    }
};

std::string zerr(const char* what) { return std::string(what) + ": " + zmq_strerror(zmq_errno()); }

bool send(Ctx& ctx, void* sock, const std::byte* p, std::size_t n) {
    while (zmq_send(sock, p, n, 0) < 0) {
        if (zmq_errno() == EINTR) continue;
        ctx.fail(zerr("zmq_send"));
        return false;
    }
    return true;
}

// Receives one message into `sum`; returns its size, -1 on an error, -2 when the peer process
// has finished and nothing more came for 0.5 s (its end marker was lost). A stall of 5 s with
// the peer still there is an error: a row must not hang the run.
long receive(Ctx& ctx, void* sock, Summer& sum) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    int r;
    const std::int64_t since = now_ns();
    for (;;) {
        r = zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT);
        if (r >= 0 || (zmq_errno() != EAGAIN && zmq_errno() != EINTR)) break;
        zmq_pollitem_t item{sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 100);
        const SideResult& peer = ctx.is_a ? ctx.sh->b : ctx.sh->a;
        const std::int64_t waited = now_ns() - since;
        if (peer.done != 0 && waited > 500'000'000) {
            zmq_msg_close(&msg);
            return -2;
        }
        if (waited > 5'000'000'000) {
            ctx.fail("zeromq: no message for 5 s");
            zmq_msg_close(&msg);
            return -1;
        }
    }
    if (r < 0) {
        ctx.fail(zerr("zmq_msg_recv"));
        zmq_msg_close(&msg);
        return -1;
    }
    const std::size_t n = zmq_msg_size(&msg);
    if (n != 0) {
        if (n != ctx.spec->record_bytes) {
            ctx.fail("a message of " + std::to_string(n) + " bytes");
            zmq_msg_close(&msg);
            return -1;
        }
        sum.feed(static_cast<const std::byte*>(zmq_msg_data(&msg)), n);
    }
    zmq_msg_close(&msg);
    return static_cast<long>(n);
}

}  // namespace

void zmq_side(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    const std::string endpoint = "ipc://" + s.dir + "/" + s.name + ".zmq";
    Socket z;
    // libzmq moves the bytes in a background I/O thread, which inherits the affinity of the
    // thread that creates it. Pinned to this side's core it would only run when the application
    // thread blocks (5 k messages/s instead of millions); so the context and its I/O thread are
    // created with both cores allowed, and then only this thread is pinned again, as a user who
    // pins the application thread gets.
    cpu_set_t pinned, both;
    ::sched_getaffinity(0, sizeof pinned, &pinned);
    CPU_ZERO(&both);
    CPU_SET(ctx.core_a, &both);
    CPU_SET(ctx.core_b, &both);
    ::sched_setaffinity(0, sizeof both, &both);
    z.ctx = zmq_ctx_new();
    const bool stream = s.pattern == Pattern::stream;
    z.sock = zmq_socket(z.ctx, stream ? (ctx.is_a ? ZMQ_PUSH : ZMQ_PULL) : ZMQ_PAIR);
    ::sched_setaffinity(0, sizeof pinned, &pinned);
    if (!z.sock) return ctx.fail(zerr("zmq_socket"));
    // Bound the queue for large messages (the default is 1000 messages each side).
    const int hwm = s.record_bytes >= 32768 ? 64 : 1000;
    zmq_setsockopt(z.sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(z.sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    const int linger = -1;  // closing waits until every queued message is sent
    zmq_setsockopt(z.sock, ZMQ_LINGER, &linger, sizeof linger);
    // A connect that comes before the peer's bind is retried after ZMQ_RECONNECT_IVL (100 ms by
    // default); retry sooner, and (below) see the connection up before the clock starts.
    const int reconnect_ms = 1;
    zmq_setsockopt(z.sock, ZMQ_RECONNECT_IVL, &reconnect_ms, sizeof reconnect_ms);
    // The consumer / ponger binds, the producer / pinger connects (ZeroMQ reconnects until the
    // peer is there).
    if (ctx.is_a ? zmq_connect(z.sock, endpoint.c_str()) != 0 : zmq_bind(z.sock, endpoint.c_str()) != 0)
        return ctx.fail(zerr(ctx.is_a ? "zmq_connect" : "zmq_bind"));

    std::vector<std::byte> buf(s.record_bytes);
    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    if (stream) {
        // Handshake before the clock starts: a 1-byte hello, so the connection is up.
        char hello = 'h';
        if (ctx.is_a) {
            if (zmq_send(z.sock, &hello, 1, 0) != 1) return ctx.fail(zerr("zmq_send hello"));
        } else if (zmq_recv(z.sock, &hello, 1, 0) != 1) {
            return ctx.fail(zerr("zmq_recv hello"));
        }
    } else {
        // Handshake before the clock starts: one empty exchange so the connection is up.
        if (ctx.is_a) {
            if (!send(ctx, z.sock, buf.data(), 0)) return;
            if (receive(ctx, z.sock, sum) < 0) return;
        } else {
            if (receive(ctx, z.sock, sum) < 0) return;
            if (!send(ctx, z.sock, buf.data(), 0)) return;
        }
    }
    ctx.ready_and_wait();
    if (stream) {
        if (ctx.is_a) {
            const std::int64_t deadline = ctx.me->t_begin + s.stream_ns;
            for (;;) {
                for (int k = 0; k < 64; ++k) {
                    f.fill(buf.data(), buf.size());
                    if (!send(ctx, z.sock, buf.data(), buf.size())) return;
                }
                if (now_ns() >= deadline) break;
            }
            if (!send(ctx, z.sock, buf.data(), 0)) return;
            ctx.finish();
            // Keep the socket open until the consumer has the end marker (at most 10 s): closing
            // it earlier lost the tail of a fast stream of small messages in our runs, though
            // ZMQ_LINGER is -1.
            const std::int64_t until = now_ns() + 10'000'000'000;
            while (std::atomic_ref<std::int64_t>(ctx.sh->b.t_end).load(std::memory_order_acquire) == 0 && now_ns() < until) {
                timespec ts{0, 1'000'000};
                ::nanosleep(&ts, nullptr);
            }
        } else {
            std::int64_t last = now_ns();
            for (;;) {
                const long n = receive(ctx, z.sock, sum);
                if (n == -2) {
                    // The producer is gone and its end marker never came: stop at the last
                    // message; the checksum tells whether data was lost too.
                    ctx.finish();
                    ctx.me->t_end = last;
                    ctx.set_note("zeromq lost the end-of-stream message (producer exited first)");
                    break;
                }
                if (n < 0) return;
                if (n == 0) {
                    ctx.finish();
                    break;
                }
                last = now_ns();
            }
        }
    } else if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            f.fill(buf.data(), buf.size());
            if (!send(ctx, z.sock, buf.data(), buf.size())) return false;
            const long n = receive(ctx, z.sock, sum);
            if (n == -2) ctx.fail("zeromq: the ponger exited");
            return n > 0;
        });
        if (ok) send(ctx, z.sock, buf.data(), 0);
        ctx.finish();
    } else {
        for (;;) {
            const long n = receive(ctx, z.sock, sum);
            if (n == -2) break;  // the pinger finished; its end marker was lost
            if (n < 0) return;
            if (n == 0) break;
            f.fill(buf.data(), buf.size());
            if (!send(ctx, z.sock, buf.data(), buf.size())) return;
        }
        ctx.finish();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
    // Linger until queued messages are sent (the default, -1) when the socket closes.
}

}  // namespace bench
