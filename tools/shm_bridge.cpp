// SPDX-License-Identifier: Apache-2.0
// shm-bridge: channels carried between hosts over ZeroMQ, with credits and acknowledged positions.
//
//   shm-bridge serve --listen tcp://0.0.0.0:7000          # the receiving host
//   shm-bridge forward ticks orders --to tcp://hostB:7000  # the sending host
//
// The forwarder is the consumer of each local channel; serve is the producer of the channel of the
// same name (or --as NAME) on its host. Whole segments travel verbatim (payload and framing
// metadata), so raw-bytes and records channels arrive exact: records, spanning records, events,
// barriers and end of stream. The protocol (docs/BRIDGE.md, tools/bridge_wire.hpp):
//   - hello: the forwarder opens a stream (geometry, framing, name); serve attaches as producer
//     (create-or-open) and answers with an ack: its committed position and its free segments.
//   - credits: the forwarder sends segment P only while P < acked + credits (the last ack's free
//     segments of the remote ring, counted from its position): the remote ring never overflows and
//     nothing queues without bound.
//   - acks: serve acknowledges each committed segment with its position; the forwarder releases a
//     local segment only when acknowledged. After a reconnect (or a gap, or a stall) it says hello
//     again and resends from the acknowledged position; serve drops what it already has.
//   - end / died: the local stream ended (or its producer died) after N segments; serve ends the
//     stream (or detaches its producer without ending it: the remote consumer sees peer_died) once
//     it has committed N segments, and acknowledges that.
// Exit codes: 0 success; 1 runtime failure with one line "shm-bridge: <cause>"; 2 bad usage.
#include <signal.h>
#include <sys/stat.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "channels/segment_transfer.hpp"
#include "shm/error.hpp"
#include "tools/bridge_wire.hpp"
#include "tools/cli.hpp"
#include "tools/sigbus.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace wire = shmchan::bridge;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// ZeroMQ heartbeats: a dead link is noticed within kHeartbeatTimeout + one interval (< 2 s).
constexpr int kHeartbeatIvlMs = 400;
constexpr int kHeartbeatTimeoutMs = 1200;
// The forwarder pings serve this often (serve answers with a pong and an ack of each stream).
constexpr auto kPingInterval = 500ms;
// A hello not answered in this time is sent again.
constexpr auto kHelloRetry = 500ms;
// Serve: a forwarder silent for this long is gone; another may take over its streams.
constexpr auto kOwnerSilence = 2s;
// Forwarder: data outstanding with no ack for this long: say hello again (resend from the ack).
constexpr auto kAckStall = 3s;
constexpr std::size_t kMaxInbound = sizeof(wire::FrameHeader) + sizeof(wire::DataBody) + wire::kMaxWireSegmentSize;

volatile sig_atomic_t g_signal = 0;
extern "C" void on_signal(int signal_number) { g_signal = signal_number; }

void install_signal_handlers() {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, nullptr);
}

int fail(const std::string& message, int code = kExitFailure) {
    std::fprintf(stderr, "shm-bridge: %s\n", message.c_str());
    return code;
}
void note(const std::string& message) { std::fprintf(stderr, "shm-bridge: %s\n", message.c_str()); }

struct Failure {
    std::string message;
    int code = kExitFailure;
};

std::string zmq_error(const std::string& what) { return what + ": " + zmq_strerror(zmq_errno()); }

// One ZeroMQ context and socket, closed in order.
class Socket {
public:
    Socket(int type) {
        context_ = zmq_ctx_new();
        if (!context_) throw Failure{zmq_error("zmq_ctx_new")};
        socket_ = zmq_socket(context_, type);
        if (!socket_) throw Failure{zmq_error("zmq_socket")};
    }
    ~Socket() {
        if (monitor_) zmq_close(monitor_);
        if (socket_) zmq_close(socket_);
        if (context_) zmq_ctx_term(context_);
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    void* get() const { return socket_; }
    void* context() const { return context_; }
    void* monitor() const { return monitor_; }
    void set(int option, int value) {
        if (zmq_setsockopt(socket_, option, &value, sizeof value) != 0) throw Failure{zmq_error("zmq_setsockopt")};
    }
    void set64(int option, std::int64_t value) {
        if (zmq_setsockopt(socket_, option, &value, sizeof value) != 0) throw Failure{zmq_error("zmq_setsockopt")};
    }
    void set_bytes(int option, const std::string& value) {
        if (zmq_setsockopt(socket_, option, value.data(), value.size()) != 0) throw Failure{zmq_error("zmq_setsockopt")};
    }
    void start_monitor(int events) {
        const std::string endpoint = "inproc://shm-bridge-monitor";
        if (zmq_socket_monitor(socket_, endpoint.c_str(), events) != 0) throw Failure{zmq_error("zmq_socket_monitor")};
        monitor_ = zmq_socket(context_, ZMQ_PAIR);
        if (!monitor_ || zmq_connect(monitor_, endpoint.c_str()) != 0) throw Failure{zmq_error("monitor")};
    }
    // Common options: no linger at close, heartbeats, bounded inbound message size.
    void common(std::size_t max_inbound) {
        set(ZMQ_LINGER, 0);
        set(ZMQ_HEARTBEAT_IVL, kHeartbeatIvlMs);
        set(ZMQ_HEARTBEAT_TIMEOUT, kHeartbeatTimeoutMs);
        set(ZMQ_HEARTBEAT_TTL, kHeartbeatTimeoutMs + kHeartbeatIvlMs);
        set64(ZMQ_MAXMSGSIZE, static_cast<std::int64_t>(max_inbound));
    }

private:
    void* context_ = nullptr;
    void* socket_ = nullptr;
    void* monitor_ = nullptr;
};

// CURVE keys: a file of lines "public KEY" and "secret KEY" in Z85 (40 characters each), as
// `shm-bridge keygen` writes them. The forwarder needs only the server's public line.
struct CurveKeys {
    std::string public_key, secret_key;
};
CurveKeys read_keys(const std::string& path, bool need_secret = true) {
    std::ifstream in(path);
    if (!in) throw Failure{"cannot read key file " + path + ": " + std::strerror(errno)};
    CurveKeys keys;
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("public ", 0) == 0) keys.public_key = line.substr(7);
        if (line.rfind("secret ", 0) == 0) keys.secret_key = line.substr(7);
    }
    if (keys.public_key.size() != 40 || (need_secret && keys.secret_key.size() != 40)) {
        throw Failure{"key file " + path + " does not hold " + (need_secret ? "'public KEY' and 'secret KEY' lines" : "a 'public KEY' line") +
                      " (Z85, 40 characters)"};
    }
    return keys;
}

bool send_frame(void* socket, const std::vector<std::byte>& frame, const std::string* route = nullptr) {
    if (route && zmq_send(socket, route->data(), route->size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return false;
    return zmq_send(socket, frame.data(), frame.size(), ZMQ_DONTWAIT) >= 0;
}

std::chrono::nanoseconds seconds_to_ns(double seconds) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

// ---- serve ---------------------------------------------------------------------------------------

struct ServeOptions {
    std::string listen;
    std::string curve_server_key;
    std::string curve_clients;  // a file of the client public keys accepted (optional)
};

struct Stream {
    std::string name;
    std::unique_ptr<shmchan::Producer> producer;  // none once ended or detached
    std::unique_ptr<shmchan::SegmentSink> sink;
    wire::HelloBody geometry{};
    std::string owner;          // the forwarder's routing id
    std::uint32_t channel = 0;  // its index of the stream
    std::uint64_t next = 0;     // segments committed
    std::uint32_t credits_reported = 0;
    std::optional<std::uint64_t> resync_at;  // a resync ack was sent at this position
    std::optional<std::uint64_t> pending_end, pending_died;
    bool ended = false, detached = false;
};

class Server {
public:
    explicit Server(const ServeOptions& options) : options_(options), socket_(ZMQ_ROUTER) {
        socket_.common(kMaxInbound);
        // Flow is bounded by credits; the high-water marks are a backstop.
        socket_.set(ZMQ_RCVHWM, 1024);
        socket_.set(ZMQ_SNDHWM, 1024);
        socket_.set(ZMQ_ROUTER_HANDOVER, 1);  // a forwarder that reconnects keeps its routing id
        if (!options.curve_server_key.empty()) {
            CurveKeys keys = read_keys(options.curve_server_key);
            socket_.set(ZMQ_CURVE_SERVER, 1);
            socket_.set_bytes(ZMQ_CURVE_SECRETKEY, keys.secret_key);
            if (!options.curve_clients.empty()) start_authenticator(options.curve_clients);
        } else if (!options.curve_clients.empty()) {
            throw Failure{"--curve-clients needs --curve-server-key", kExitUsage};
        }
        if (zmq_bind(socket_.get(), options.listen.c_str()) != 0) throw Failure{zmq_error("cannot listen on " + options.listen)};
    }

    int run() {
        note("serving on " + options_.listen);
        int idle_ms = 1;
        while (g_signal == 0) {
            zmq_pollitem_t items[2] = {{socket_.get(), 0, ZMQ_POLLIN, 0}, {zap_.socket, 0, ZMQ_POLLIN, 0}};
            int ready = zmq_poll(items, zap_.socket ? 2 : 1, idle_ms);
            if (ready < 0 && zmq_errno() != EINTR) return fail(zmq_error("zmq_poll"));
            bool progress = false;
            if (zap_.socket && (items[1].revents & ZMQ_POLLIN)) authenticate();
            if (items[0].revents & ZMQ_POLLIN) progress |= receive_all();
            progress |= grant_credits();
            idle_ms = progress ? 1 : std::min(idle_ms * 2, 50);
        }
        note("stopped by " + std::string(g_signal == SIGTERM ? "SIGTERM" : "SIGINT"));
        return kExitOk;
    }

private:
    // CURVE client authentication (ZeroMQ's ZAP, RFC 27): an inproc handler in our context that
    // accepts the client public keys of the file (lines "public KEY" or a bare Z85 key).
    void start_authenticator(const std::string& path) {
        std::ifstream in(path);
        if (!in) throw Failure{"cannot read client keys " + path + ": " + std::strerror(errno)};
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("public ", 0) == 0) line = line.substr(7);
            if (line.empty() || line[0] == '#' || line.rfind("secret ", 0) == 0) continue;
            std::uint8_t key[32];
            if (line.size() != 40 || !zmq_z85_decode(key, line.c_str())) {
                throw Failure{"client keys " + path + ": '" + wire::printable(line) + "' is not a Z85 public key"};
            }
            allowed_clients_.emplace_back(reinterpret_cast<const char*>(key), sizeof key);
        }
        if (allowed_clients_.empty()) throw Failure{"client keys " + path + ": no key"};
        zap_.socket = zmq_socket(socket_.context(), ZMQ_REP);
        if (!zap_.socket || zmq_bind(zap_, "inproc://zeromq.zap.01") != 0) throw Failure{zmq_error("ZAP handler")};
    }

    void authenticate() {
        std::vector<std::string> parts;
        for (bool more = true; more && parts.size() < 16;) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, zap_, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&part);
                return;
            }
            parts.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        // version, request id, domain, address, routing id, mechanism, credentials...
        const bool ok = parts.size() >= 7 && parts[0] == "1.0" && parts[5] == "CURVE" &&
                        std::find(allowed_clients_.begin(), allowed_clients_.end(), parts[6]) != allowed_clients_.end();
        if (!ok && ++refused_clients_ <= 10) note("refused a client whose CURVE key is not in --curve-clients");
        const std::string request_id = parts.size() > 1 ? parts[1] : "";
        const std::string reply[] = {"1.0", request_id, ok ? "200" : "400", ok ? "OK" : "unknown client key", "", ""};
        for (std::size_t i = 0; i < 6; ++i) zmq_send(zap_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
    }

    bool receive_all() {
        bool any = false;
        for (int k = 0; k < 256; ++k) {
            zmq_msg_t route, body;
            zmq_msg_init(&route);
            if (zmq_msg_recv(&route, socket_.get(), ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&route);
                break;
            }
            zmq_msg_init(&body);
            const bool more = zmq_msg_more(&route);
            if (!more || zmq_msg_recv(&body, socket_.get(), ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&route);
                zmq_msg_close(&body);
                continue;
            }
            std::string owner(static_cast<const char*>(zmq_msg_data(&route)), zmq_msg_size(&route));
            // Drop any further parts: a frame is one part.
            bool extra = zmq_msg_more(&body);
            while (extra) {
                zmq_msg_t rest;
                zmq_msg_init(&rest);
                if (zmq_msg_recv(&rest, socket_.get(), ZMQ_DONTWAIT) < 0) extra = false;
                else extra = zmq_msg_more(&rest);
                zmq_msg_close(&rest);
            }
            handle(owner, zmq_msg_data(&body), zmq_msg_size(&body));
            zmq_msg_close(&route);
            zmq_msg_close(&body);
            any = true;
        }
        return any;
    }

    void reply(const std::string& owner, const std::vector<std::byte>& frame) { send_frame(socket_.get(), frame, &owner); }

    void ack(Stream& s, std::uint16_t flags) {
        frame_.clear();
        const std::uint32_t credits = s.sink ? s.sink->free_segments() : 0;
        s.credits_reported = credits;
        if (s.ended) flags |= wire::kAckEnded;
        if (s.detached) flags |= wire::kAckDetached;
        wire::encode_header(frame_, wire::FrameType::ack, flags, s.channel, s.next, credits, 0);
        reply(s.owner, frame_);
    }

    void refuse(const std::string& owner, std::uint32_t channel, const std::string& why, bool retry) {
        frame_.clear();
        const std::string text = why.substr(0, wire::kMaxErrorBytes);
        wire::encode_header(frame_, wire::FrameType::error, retry ? wire::kErrorRetry : 0, channel, 0, 0, text.size());
        wire::append_bytes(frame_, text.data(), text.size());
        reply(owner, frame_);
    }

    void handle(const std::string& owner, const void* data, std::size_t size) {
        wire::Frame frame;
        if (auto bad = wire::decode(data, size, frame)) {
            // Hostile or broken: never trusted, never fatal.
            if (++refused_frames_ <= 10) note("dropped a frame from a peer: " + *bad);
            return;
        }
        owners_seen_[owner] = Clock::now();
        const std::uint32_t channel = frame.header.channel;
        switch (frame.type) {
            case wire::FrameType::hello: return on_hello(owner, frame);
            case wire::FrameType::ping: return on_ping(owner, frame);
            case wire::FrameType::data:
            case wire::FrameType::end:
            case wire::FrameType::died:
            case wire::FrameType::priority: {
                auto route = routes_.find({owner, channel});
                if (route == routes_.end()) return refuse(owner, channel, "no open stream on channel index " + std::to_string(channel), true);
                Stream& s = streams_.at(route->second);
                if (frame.type == wire::FrameType::data) return on_data(s, frame);
                if (frame.type == wire::FrameType::priority) {
                    // Overtakes the queued data; if the lane is busy, the in-band copy still comes.
                    if (s.sink) (void)s.sink->publish_priority(frame.header.position);
                    return;
                }
                return on_end(s, frame);
            }
            default:
                if (++refused_frames_ <= 10) note("dropped a frame of a type serve does not take");
        }
    }

    void on_ping(const std::string& owner, const wire::Frame& frame) {
        frame_.clear();
        wire::encode_header(frame_, wire::FrameType::pong, 0, 0, frame.header.position, 0, 0);
        reply(owner, frame_);
        // Refresh every stream of this forwarder: a lost ack never stalls it for long.
        for (auto& [name, s] : streams_) {
            if (s.owner == owner) ack(s, 0);
        }
    }

    void on_hello(const std::string& owner, const wire::Frame& frame) {
        const std::string name(frame.name);
        const std::uint32_t channel = frame.header.channel;
        auto it = streams_.find(name);
        if (it != streams_.end() && it->second.owner != owner) {
            auto seen = owners_seen_.find(it->second.owner);
            if (seen != owners_seen_.end() && Clock::now() - seen->second < kOwnerSilence && (it->second.producer || !it->second.ended)) {
                return refuse(owner, channel, "channel " + wire::printable(name) + " is carried by another live forwarder", true);
            }
        }
        if (it == streams_.end()) it = streams_.emplace(name, Stream{}).first;
        Stream& s = it->second;
        if (!s.owner.empty()) routes_.erase({s.owner, s.channel});
        s.name = name;
        s.owner = owner;
        s.channel = channel;
        routes_[{owner, channel}] = name;
        s.resync_at.reset();
        s.pending_end.reset();
        s.pending_died.reset();
        if (s.ended && s.geometry.stream_id != frame.hello.stream_id) {
            // Another stream under a name whose last stream ended here: a fresh start if that one
            // was read and removed; refused while it waits to be read.
            s.ended = false;
        }
        if (!s.producer && !s.ended) {
            if (Failure* error = attach(s, frame.hello)) {
                const std::string message = error->message;
                routes_.erase({owner, channel});
                streams_.erase(it);
                return refuse(owner, channel, message, false);
            }
        } else if (std::memcmp(&s.geometry, &frame.hello, offsetof(wire::HelloBody, name_length)) != 0) {
            return refuse(owner, channel, "channel " + name + " is open with another geometry or framing", false);
        } else if (s.producer && s.geometry.stream_id != frame.hello.stream_id) {
            // A different local channel (removed and made again) under the name of a stream
            // still open here: continuing it would splice two streams.
            return refuse(owner, channel, "remote channel " + name + " carries another stream, not ended yet", false);
        }
        if (!s.ended && frame.header.position > s.next) {
            const std::string message = "remote channel " + name + " holds " + std::to_string(s.next) +
                                        " segments but the stream continues at " + std::to_string(frame.header.position) +
                                        " (segments in between are gone: remove the remote channel)";
            s.producer.reset();
            s.sink.reset();
            routes_.erase({owner, channel});
            streams_.erase(it);
            return refuse(owner, channel, message, false);
        }
        ack(s, wire::kAckOpened);
    }

    Failure* attach(Stream& s, const wire::HelloBody& hello) {
        static Failure last;
        s.ended = s.detached = false;
        // A channel whose stream already ended (the end was written, its ack lost): say so.
        try {
            shmchan::ChannelInfo info = shmchan::inspect(s.name);
            if (info.end_of_stream) {
                // Ours only if we know it is the same stream (its end written, the ack lost): a
                // stream we do not remember (refused, or serve restarted) is another one.
                if (s.geometry.stream_id != hello.stream_id) {
                    last.message = "remote channel " + s.name + " holds an ended stream not read yet (read or remove it first)";
                    return &last;
                }
                s.ended = true;
                s.next = info.published;
                s.geometry = hello;
                return nullptr;
            }
        } catch (const shmchan::Error&) {
            // Missing (or not ready): attach creates it, or reports why not.
        }
        shmchan::ChannelOptions options;
        options.segment_size = hello.segment_size;
        options.segment_count = hello.segment_count;
        options.framing = static_cast<shmchan::Framing>(hello.framing);
        options.checksums = (hello.channel_flags & shmchan::layout::kFlagChecksums) != 0;
        options.max_record_bytes = hello.max_record_bytes;
        options.on_leftover = shmchan::OnLeftover::resume;
        try {
            s.producer = std::make_unique<shmchan::Producer>(shmchan::Producer::attach(s.name, options));
            s.sink = std::make_unique<shmchan::SegmentSink>(*s.producer);
        } catch (const shmchan::Error& error) {
            last.message = error.what();
            return &last;
        }
        s.geometry = hello;
        s.next = s.sink->next_position();
        note("stream " + s.name + " open at segment " + std::to_string(s.next));
        return nullptr;
    }

    void on_data(Stream& s, const wire::Frame& frame) {
        const std::uint64_t position = frame.header.position;
        if (!s.producer || position < s.next) return ack(s, 0);  // we have it already: drop
        if (position > s.next) {
            // A gap (frames lost with a link): ask for a resend from our position, once.
            if (s.resync_at != s.next) {
                s.resync_at = s.next;
                ack(s, wire::kAckResync);
            }
            return;
        }
        shmchan::CarriedSegment segment;
        segment.position = position;
        segment.payload = std::span<const std::byte>(frame.payload, frame.data.committed);
        segment.flags = frame.data.flags;
        segment.record_count = frame.data.record_count;
        segment.first_record_offset = frame.data.first_record_offset;
        segment.checksum = frame.data.checksum;
        shmchan::Status status = s.sink->try_write(segment);
        if (status == shmchan::Status::would_block) {
            // Sent without a credit: drop it and say where we are.
            s.resync_at = s.next;
            return ack(s, wire::kAckResync);
        }
        if (status != shmchan::Status::ok) {
            note("stream " + s.name + ": " + s.sink->last_error());
            return refuse(s.owner, s.channel, "stream " + s.name + ": " + s.sink->last_error(), false);
        }
        s.next = s.sink->next_position();
        finish_if_due(s);
        ack(s, 0);
    }

    void on_end(Stream& s, const wire::Frame& frame) {
        const std::uint64_t position = frame.header.position;
        if (s.ended || s.detached) return ack(s, 0);
        if (position < s.next) {
            return refuse(s.owner, s.channel, "stream " + s.name + " ends at " + std::to_string(position) +
                                                  " but " + std::to_string(s.next) + " segments are committed", false);
        }
        if (frame.type == wire::FrameType::end) s.pending_end = position;
        else s.pending_died = position;
        finish_if_due(s);
        ack(s, 0);
    }

    void finish_if_due(Stream& s) {
        if (!s.producer) return;
        if (s.pending_end == s.next) {
            shmchan::Status status = s.producer->end_stream();
            if (status != shmchan::Status::ok) note("stream " + s.name + ": end of stream: " + s.producer->last_error());
            s.ended = true;
            note("stream " + s.name + " ended after " + std::to_string(s.next) + " segments");
        } else if (s.pending_died == s.next) {
            s.detached = true;
            note("stream " + s.name + ": its producer died after " + std::to_string(s.next) + " segments");
        } else {
            return;
        }
        s.sink.reset();
        s.producer.reset();  // detaches: without an end of stream, the consumer sees peer_died
    }

    bool grant_credits() {
        bool any = false;
        for (auto& [name, s] : streams_) {
            if (!s.sink) continue;
            if (s.sink->free_segments() > s.credits_reported) {
                ack(s, 0);
                any = true;
            }
        }
        return any;
    }

    ServeOptions options_;
    Socket socket_;
    std::map<std::string, Stream> streams_;
    std::map<std::pair<std::string, std::uint32_t>, std::string> routes_;
    std::map<std::string, Clock::time_point> owners_seen_;
    std::vector<std::byte> frame_;
    std::uint64_t refused_frames_ = 0, refused_clients_ = 0;
    // Declared after socket_: closed first, before the context is terminated (which waits for
    // every socket of the context), also when the constructor throws.
    struct OwnedSocket {
        void* socket = nullptr;
        ~OwnedSocket() {
            if (socket) zmq_close(socket);
        }
        operator void*() const { return socket; }
    } zap_;
    std::vector<std::string> allowed_clients_;
};

// ---- forward -------------------------------------------------------------------------------------

struct ForwardOptions {
    std::vector<std::string> names;
    std::string to;
    std::string as;
    std::optional<double> timeout_seconds;
    bool lines = false;
    std::optional<std::uint32_t> segment_size, segments;
    std::string curve_server_key, curve_client_key;
};

struct Carried {
    std::uint32_t index = 0;
    std::string local, remote;
    std::unique_ptr<shmchan::Consumer> consumer;
    std::unique_ptr<shmchan::SegmentSource> source;
    wire::HelloBody hello{};
    bool opened = false;  // a hello was answered on the current link
    Clock::time_point hello_sent{}, last_ack{}, end_sent{};
    std::uint64_t acked = 0, next_send = 0, credit_limit = 0;
    std::uint64_t sent_end = 0;  // one past the highest segment ever sent, on any link
    std::optional<std::uint64_t> end_at, died_at;
    bool finished = false;  // end (or death) acknowledged
    Clock::time_point last_liveness{};
};

class Forwarder {
public:
    explicit Forwarder(const ForwardOptions& options) : options_(options), socket_(ZMQ_DEALER) {
        std::uint64_t window = 0;
        for (std::size_t i = 0; i < options.names.size(); ++i) {
            Carried c;
            c.index = static_cast<std::uint32_t>(i);
            c.local = options.names[i];
            c.remote = options.as.empty() ? c.local : options.as;
            attach(c);
            window += c.hello.segment_count;
            carried_.push_back(std::move(c));
        }
        socket_.common(sizeof(wire::FrameHeader) + wire::kMaxErrorBytes);
        // The window: every segment of every ring in flight at once, and the control frames.
        const int hwm = static_cast<int>(std::min<std::uint64_t>(window + 4 * carried_.size() + 16, 1 << 20));
        socket_.set(ZMQ_SNDHWM, hwm);
        socket_.set(ZMQ_RCVHWM, hwm);
        socket_.set(ZMQ_IMMEDIATE, 1);  // nothing queues toward a link that is not up
        // One routing id for this process's connections: after a reconnect serve knows us as
        // the same forwarder (it hands the id over to the new connection).
        {
            std::random_device random;
            char id[32];
            std::snprintf(id, sizeof id, "fwd-%08x%08x", random(), random());
            socket_.set_bytes(ZMQ_ROUTING_ID, id);
        }
        socket_.set(ZMQ_RECONNECT_IVL, 100);
        socket_.set(ZMQ_RECONNECT_IVL_MAX, 1000);
        if (!options.curve_server_key.empty() || !options.curve_client_key.empty()) {
            if (options.curve_server_key.empty() || options.curve_client_key.empty()) {
                throw Failure{"CURVE needs both --curve-server-key and --curve-client-key", kExitUsage};
            }
            CurveKeys server = read_keys(options.curve_server_key, /*need_secret=*/false);
            CurveKeys client = read_keys(options.curve_client_key);
            socket_.set_bytes(ZMQ_CURVE_SERVERKEY, server.public_key);
            socket_.set_bytes(ZMQ_CURVE_PUBLICKEY, client.public_key);
            socket_.set_bytes(ZMQ_CURVE_SECRETKEY, client.secret_key);
        }
        socket_.start_monitor(ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED);
        if (zmq_connect(socket_.get(), options.to.c_str()) != 0) throw Failure{zmq_error("cannot connect to " + options.to), kExitUsage};
    }

    int run() {
        const auto start = Clock::now();
        last_heard_ = start;
        int idle_ms = 1;
        while (g_signal == 0) {
            zmq_pollitem_t items[2] = {{socket_.get(), 0, ZMQ_POLLIN, 0}, {socket_.monitor(), 0, ZMQ_POLLIN, 0}};
            int ready = zmq_poll(items, 2, idle_ms);
            if (ready < 0 && zmq_errno() != EINTR) return fail(zmq_error("zmq_poll"));
            bool progress = false;
            if (items[1].revents & ZMQ_POLLIN) read_monitor();
            if (items[0].revents & ZMQ_POLLIN) progress |= receive_all();
            const auto now = Clock::now();
            if (now - last_ping_ >= kPingInterval) {
                last_ping_ = now;
                frame_.clear();
                wire::encode_header(frame_, wire::FrameType::ping, 0, 0, ++ping_count_, 0, 0);
                send_frame(socket_.get(), frame_);
            }
            for (Carried& c : carried_) progress |= pump(c, now);
            if (std::all_of(carried_.begin(), carried_.end(), [](const Carried& c) { return c.finished; })) return finish();
            if (options_.timeout_seconds && now - last_heard_ > seconds_to_ns(*options_.timeout_seconds)) {
                return fail("no link to " + options_.to + " for " + std::to_string(*options_.timeout_seconds) + " s (--timeout)");
            }
            idle_ms = progress ? 0 : std::clamp(idle_ms * 2, 1, 20);
        }
        return fail(std::string("interrupted by ") + (g_signal == SIGTERM ? "SIGTERM" : "SIGINT"), 128 + g_signal);
    }

private:
    void attach(Carried& c) {
        shmchan::ChannelOptions options;
        options.framing = options_.lines ? shmchan::Framing::records : shmchan::Framing::raw_bytes;
        try {
            // An existing channel's framing is adopted (the producer created it).
            shmchan::ChannelInfo info = shmchan::inspect(c.local);
            options.framing = info.framing;
        } catch (const shmchan::Error&) {
            options.segment_size = options_.segment_size;
            options.segment_count = options_.segments;
        }
        options.on_leftover = shmchan::OnLeftover::resume;
        c.consumer = std::make_unique<shmchan::Consumer>(shmchan::Consumer::attach(c.local, options));
        c.source = std::make_unique<shmchan::SegmentSource>(*c.consumer);
        const shmchan::ChannelInfo info = c.consumer->info();
        if (info.segment_size > wire::kMaxWireSegmentSize) {
            throw Failure{"channel " + c.local + ": segments of " + std::to_string(info.segment_size) + " bytes exceed the bridge's limit"};
        }
        c.hello = wire::HelloBody{info.segment_size, info.segment_count, static_cast<std::uint32_t>(info.framing),
                                  info.flags & shmchan::layout::kFlagChecksums, info.max_record_bytes,
                                  static_cast<std::uint32_t>(c.remote.size()), 0, info.created_realtime_ns};
        c.acked = c.next_send = c.source->first_unreleased();
        if (c.remote.size() > wire::kMaxNameBytes) throw Failure{"remote name too long", kExitUsage};
    }

    void read_monitor() {
        for (;;) {
            zmq_msg_t event, address;
            zmq_msg_init(&event);
            if (zmq_msg_recv(&event, socket_.monitor(), ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&event);
                return;
            }
            std::uint16_t kind = 0;
            if (zmq_msg_size(&event) >= 2) std::memcpy(&kind, zmq_msg_data(&event), 2);
            zmq_msg_init(&address);
            if (zmq_msg_more(&event)) (void)zmq_msg_recv(&address, socket_.monitor(), 0);
            zmq_msg_close(&event);
            zmq_msg_close(&address);
            if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED || kind == ZMQ_EVENT_DISCONNECTED) {
                // A new link (or none): what was in flight may be lost. Say hello again and
                // resend from the acknowledged positions.
                for (Carried& c : carried_) {
                    c.opened = false;
                    c.hello_sent = {};  // at once
                }
                if (kind == ZMQ_EVENT_DISCONNECTED) note("link to " + options_.to + " lost; reconnecting");
                else ++connects_;
            }
        }
    }

    bool receive_all() {
        bool any = false;
        for (int k = 0; k < 1024; ++k) {
            zmq_msg_t message;
            zmq_msg_init(&message);
            if (zmq_msg_recv(&message, socket_.get(), ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&message);
                break;
            }
            any = true;
            wire::Frame frame;
            auto bad = wire::decode(zmq_msg_data(&message), zmq_msg_size(&message), frame);
            if (!bad && frame.header.channel >= carried_.size()) bad = "channel index out of range";
            if (bad) {
                note("dropped a frame from serve: " + *bad);
            } else {
                last_heard_ = Clock::now();
                on_frame(frame);
            }
            zmq_msg_close(&message);
        }
        return any;
    }

    void on_frame(const wire::Frame& frame) {
        Carried& c = carried_[frame.header.channel];
        if (frame.type == wire::FrameType::pong) return;
        if (frame.type == wire::FrameType::error) {
            const std::string text = wire::printable(frame.text);
            if (frame.header.flags & wire::kErrorRetry) {
                c.opened = false;
                return;
            }
            throw Failure{"remote end refused " + c.remote + ": " + text};
        }
        if (frame.type != wire::FrameType::ack) return;
        const std::uint64_t position = frame.header.position;
        const std::uint16_t flags = frame.header.flags;
        if (flags & wire::kAckOpened) {
            if (position < c.source->first_unreleased()) {
                throw Failure{"remote channel " + c.remote + " is at segment " + std::to_string(position) +
                              ", behind the local stream's first unsent segment " + std::to_string(c.source->first_unreleased())};
            }
            c.opened = true;
            c.next_send = position;
        } else if (!c.opened) {
            return;  // an answer from before the last hello
        }
        if (position > c.acked) {
            // An answer to a second hello may have rewound next_send below what the first answer
            // let us send: an ack of a segment sent on the way is no error.
            if (position > std::max(c.next_send, c.sent_end) && !(flags & wire::kAckOpened)) {
                throw Failure{"remote end acknowledged segment " + std::to_string(position) + " of " + c.remote + " never sent"};
            }
            if (c.source->release_until(position) != shmchan::Status::ok) {
                throw Failure{"channel " + c.local + ": " + c.source->last_error()};
            }
            c.acked = position;
            c.next_send = std::max(c.next_send, position);
        }
        c.last_ack = Clock::now();
        c.credit_limit = position + frame.header.credits;
        if (flags & wire::kAckResync) c.next_send = std::max(position, c.acked);
        if (flags & (wire::kAckEnded | wire::kAckDetached)) {
            if (!c.finished) {
                c.finished = true;
                if (flags & wire::kAckDetached) died_ = true;
            }
        }
    }

    void send_hello(Carried& c, Clock::time_point now) {
        frame_.clear();
        wire::encode_header(frame_, wire::FrameType::hello, 0, c.index, c.source->first_unreleased(), 0,
                            sizeof(wire::HelloBody) + c.remote.size());
        wire::append(frame_, c.hello);
        wire::append_bytes(frame_, c.remote.data(), c.remote.size());
        send_frame(socket_.get(), frame_);
        c.hello_sent = now;
    }

    // Moves one stream along: hello when needed, data against credits, end or death.
    bool pump(Carried& c, Clock::time_point now) {
        if (c.finished) return false;
        if (!c.opened) {
            if (now - c.hello_sent >= kHelloRetry) send_hello(c, now);
            return false;
        }
        if (c.next_send > c.acked && now - c.last_ack > kAckStall) {
            c.opened = false;  // no ack for long: hello again, resend from the ack
            return false;
        }
        bool progress = false;
        // A priority barrier goes first, ahead of the data waiting for credits.
        if (std::uint64_t checkpoint = 0; c.source->take_priority(checkpoint)) {
            frame_.clear();
            wire::encode_header(frame_, wire::FrameType::priority, 0, c.index, checkpoint, 0, 0);
            (void)send_frame(socket_.get(), frame_);
            progress = true;
        }
        const std::uint64_t window_end = c.source->first_unreleased() + c.hello.segment_count;
        while (c.next_send < c.credit_limit && c.next_send < window_end) {
            if (c.end_at && c.next_send >= *c.end_at) break;
            if (c.died_at && c.next_send >= *c.died_at) break;
            shmchan::CarriedSegment segment;
            shmchan::Status status = c.source->try_get(c.next_send, segment);
            if (status == shmchan::Status::would_block) break;
            if (status == shmchan::Status::end_of_stream) {
                c.end_at = c.next_send;
                break;
            }
            if (status != shmchan::Status::ok) throw Failure{"channel " + c.local + ": " + c.source->last_error()};
            frame_.clear();
            wire::encode_header(frame_, wire::FrameType::data, 0, c.index, c.next_send, 0,
                                sizeof(wire::DataBody) + segment.payload.size());
            wire::append(frame_, wire::DataBody{static_cast<std::uint32_t>(segment.payload.size()), segment.flags,
                                                segment.record_count, segment.first_record_offset, segment.checksum, 0});
            wire::append_bytes(frame_, segment.payload.data(), segment.payload.size());
            if (!send_frame(socket_.get(), frame_)) break;  // the link is full or down: later
            if (c.next_send == c.acked) c.last_ack = now;     // the stall clock starts with the first unacked
            ++c.next_send;
            c.sent_end = std::max(c.sent_end, c.next_send);
            progress = true;
        }
        // The stream's end: once every segment before it is sent, say so (again after each hello).
        if (!c.end_at && !c.died_at && now - c.last_liveness >= 200ms) {
            c.last_liveness = now;
            const shmchan::ChannelInfo info = c.consumer->info();
            if (info.end_of_stream) {
                c.end_at = info.published;
            } else if (info.producer.attach_count > 0 && !info.producer.alive) {
                // The producer died (or left) before the end: published is final now.
                c.died_at = c.consumer->info().published;
                note("the producer of " + c.local + " died before end of stream; carrying its " +
                     std::to_string(*c.died_at) + " segments");
            }
        }
        for (auto* at : {&c.end_at, &c.died_at}) {
            if (*at && c.next_send == **at && now - c.end_sent >= kHelloRetry) {
                frame_.clear();
                wire::encode_header(frame_, at == &c.end_at ? wire::FrameType::end : wire::FrameType::died, 0, c.index,
                                    **at, 0, 0);
                if (send_frame(socket_.get(), frame_)) c.end_sent = now;
            }
        }
        return progress;
    }

    int finish() {
        if (died_) return fail("a producer died before end of stream; every segment it published was carried");
        for (Carried& c : carried_) c.consumer->remove_channel();
        return kExitOk;
    }

    ForwardOptions options_;
    Socket socket_;
    std::vector<Carried> carried_;
    std::vector<std::byte> frame_;
    Clock::time_point last_heard_{}, last_ping_{};
    std::uint64_t ping_count_ = 0, connects_ = 0;
    bool died_ = false;
};

int keygen(const std::string& path) {
    char public_key[41], secret_key[41];
    if (zmq_curve_keypair(public_key, secret_key) != 0) return fail(zmq_error("zmq_curve_keypair (libzmq without CURVE?)"));
    std::FILE* out = std::fopen(path.c_str(), "wx");
    if (!out) return fail("cannot create " + path + ": " + std::strerror(errno));
    std::fprintf(out, "public %s\nsecret %s\n", public_key, secret_key);
    std::fclose(out);
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-bridge: shmchan channels carried between hosts over ZeroMQ"};
    app.name("shm-bridge");
    app.require_subcommand(1);
    app.failure_message([](const CLI::App* command, const CLI::Error& error) {
        return "shm-bridge: " + CLI::FailureMessage::simple(command, error);
    });
    ServeOptions serve_options;
    ForwardOptions forward_options;
    std::string keygen_path;
    auto* serve = app.add_subcommand("serve", "receive streams and write each into the local channel of its name");
    serve->add_option("--listen", serve_options.listen, "the address to listen on, tcp://ADDR:PORT (no default)")->required();
    serve->add_option("--curve-server-key", serve_options.curve_server_key,
                      "CURVE: this server's key file (encrypts the link, refuses peers without CURVE)");
    serve->add_option("--curve-clients", serve_options.curve_clients,
                      "CURVE: a file of the client public keys accepted (others are refused)");
    auto* forward = app.add_subcommand("forward", "carry local channels NAME... to a serving shm-bridge");
    forward->add_option("names", forward_options.names, "local channels to carry")->required();
    forward->add_option("--to", forward_options.to, "the serving end, tcp://HOST:PORT")->required();
    forward->add_option("--as", forward_options.as, "the remote channel's name (one NAME only)");
    forward->add_option("--timeout", forward_options.timeout_seconds, "give up after S seconds without a link (exit 1)")
        ->check(CLI::PositiveNumber);
    forward->add_flag("--lines", forward_options.lines, "a channel created here is a records channel (as shm-pipe --lines)");
    forward->add_option("--segment-size", forward_options.segment_size, "geometry of a channel created here");
    forward->add_option("--segments", forward_options.segments, "geometry of a channel created here");
    forward->add_option("--curve-server-key", forward_options.curve_server_key, "CURVE: the server's key file (its public key)");
    forward->add_option("--curve-client-key", forward_options.curve_client_key, "CURVE: this client's key file");
    auto* generate = app.add_subcommand("keygen", "write a new CURVE key pair to FILE (mode 0600)");
    generate->add_option("file", keygen_path, "the key file to create")->required();
    shmchan::tools::add_standard_flags(app);
    if (auto error = shmchan::tools::command_word_error(app, argc, argv, {"--to", "--as", "--listen", "--timeout"})) {
        std::fprintf(stderr, "%s\n", error->c_str());
        return kExitUsage;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);
        return code == 0 ? kExitOk : kExitUsage;
    }
    if (forward->parsed() && !forward_options.as.empty() && forward_options.names.size() != 1) {
        return fail("--as names the remote channel of one NAME only", kExitUsage);
    }
    if (forward->parsed() && forward_options.names.size() > wire::kMaxChannelsPerLink) {
        return fail("at most " + std::to_string(wire::kMaxChannelsPerLink) + " channels per forwarder", kExitUsage);
    }
    install_signal_handlers();
    shmchan::tools::report_sigbus_and_exit("shm-bridge");
    try {
        if (generate->parsed()) {
            ::umask(077);
            return keygen(keygen_path);
        }
        if (serve->parsed()) return Server(serve_options).run();
        return Forwarder(forward_options).run();
    } catch (const Failure& failure) {
        return fail(failure.message, failure.code);
    } catch (const shmchan::Error& error) {
        const auto& code = error.code();
        if (code == shmchan::Errc::bad_name || code == shmchan::Errc::bad_options) return fail(error.what(), kExitUsage);
        return fail(error.what());
    } catch (const std::exception& error) {
        return fail(error.what());
    }
}
