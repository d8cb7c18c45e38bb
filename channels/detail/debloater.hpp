// SPDX-License-Identifier: Apache-2.0
// Debloating, the consumer's half (layout.hpp rule 7, docs/LAYOUT.md "Debloating"): from the
// segments and bytes it releases and the time it spends busy, estimate the consumer's throughput
// (an exponential moving average over sample periods, as Flink's buffer debloater) and turn it
// into a credit limit: the segments in flight that take about `target` to consume.
//
// Pure arithmetic: the caller reads the clock (at most once per stride of segments) and its own
// idle counter, and stores what publish() hands it. Tests drive it with a made-up clock.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace shmchan::detail {

struct DebloatSettings {
    std::uint64_t target_ns = 0;               // in-flight time to aim for; 0: off
    std::uint64_t period_ns = 200'000'000;     // one sample per period of the consumer's progress
    std::uint32_t segment_count = 1;           // N
    std::uint32_t segment_payload = 1;         // bytes of payload per segment (display figures)
};

class Debloater {
public:
    static constexpr double kAlpha = 2.0 / 21.0;         // Flink: 20 samples
    static constexpr std::uint32_t kThresholdPercent = 25;  // republish on a change this large
    static constexpr std::uint32_t kClockReadsPerPeriod = 8;
    static constexpr std::uint32_t kMaxStride = 64;

    struct Published {
        std::uint32_t credit_limit = 0;       // 0: nothing to store this time
        std::uint64_t throughput_bytes_per_s = 0;
        std::uint64_t segments_per_ks = 0;  // segments per 1000 s
    };

    explicit Debloater(const DebloatSettings& settings) noexcept : settings_(settings) {}

    bool enabled() const noexcept { return settings_.target_ns != 0; }
    std::uint64_t target_ns() const noexcept { return settings_.target_ns; }

    // At a release of `segments`: true when the caller should read the clock and call sample().
    bool released(std::uint64_t segments) noexcept {
        since_clock_ += segments;
        return since_clock_ >= stride_;
    }

    // With the clock (monotonic ns), the consumer's idle time and bytes read so far (its own
    // counters) and its release position. Starts the first window on the first call; closes a
    // window once a period has passed. true: `out` holds the throughput to show and, if
    // out.credit_limit != 0, a new limit to store.
    bool sample(std::uint64_t now_ns, std::uint64_t idle_ns, std::uint64_t bytes, std::uint64_t position,
                Published& out) noexcept {
        since_clock_ = 0;
        if (!started_) {
            started_ = true;
            start_window(now_ns, idle_ns, bytes, position);
            return false;
        }
        const std::uint64_t elapsed = now_ns > window_start_ns_ ? now_ns - window_start_ns_ : 0;
        if (elapsed < settings_.period_ns) return false;
        const std::uint64_t idle = idle_ns >= window_idle_ns_ ? idle_ns - window_idle_ns_ : 0;
        const std::uint64_t busy = elapsed > idle ? elapsed - idle : 0;
        const std::uint64_t segments = position - window_position_;
        const std::uint64_t window_bytes = bytes >= window_bytes_ ? bytes - window_bytes_ : 0;
        // The clock is read about kClockReadsPerPeriod times per period at this rate.
        stride_ = static_cast<std::uint32_t>(
            std::clamp<std::uint64_t>(segments * settings_.period_ns / elapsed / kClockReadsPerPeriod, 1, kMaxStride));
        start_window(now_ns, idle_ns, bytes, position);
        if (busy == 0 || segments == 0) return false;  // nothing measured: all idle
        const double seconds = static_cast<double>(busy) / 1e9;
        const double segment_rate = static_cast<double>(segments) / seconds;
        const double byte_rate = static_cast<double>(window_bytes) / seconds;
        if (!averaging_) {
            averaging_ = true;
            segment_rate_ = segment_rate;
            byte_rate_ = byte_rate;
        } else {
            segment_rate_ += kAlpha * (segment_rate - segment_rate_);
            byte_rate_ += kAlpha * (byte_rate - byte_rate_);
        }
        out.throughput_bytes_per_s = static_cast<std::uint64_t>(byte_rate_);
        out.segments_per_ks = static_cast<std::uint64_t>(segment_rate_ * 1000.0);
        out.credit_limit = 0;
        const std::uint32_t limit = limit_for(segment_rate_);
        const std::uint64_t change = limit > published_ ? limit - published_ : published_ - limit;
        // A limit at a bound is published as it is: the threshold would keep it a step away.
        const bool bound = limit == settings_.segment_count || limit == std::min<std::uint32_t>(2, settings_.segment_count);
        if (published_ == 0 || (change != 0 && bound) || change * 100 >= std::uint64_t{published_} * kThresholdPercent) {
            published_ = limit;
            out.credit_limit = limit;
        }
        return true;
    }

    // ceil(rate x target) segments, within [min(2, N), N].
    std::uint32_t limit_for(double segments_per_s) const noexcept {
        const std::uint32_t low = std::min<std::uint32_t>(2, settings_.segment_count);
        const double wanted = std::ceil(segments_per_s * static_cast<double>(settings_.target_ns) / 1e9);
        if (!(wanted < static_cast<double>(settings_.segment_count))) return settings_.segment_count;  // also NaN
        return std::max(low, static_cast<std::uint32_t>(std::max(wanted, 0.0)));
    }

    std::uint32_t published_limit() const noexcept { return published_; }
    std::uint32_t stride() const noexcept { return stride_; }

private:
    void start_window(std::uint64_t now_ns, std::uint64_t idle_ns, std::uint64_t bytes, std::uint64_t position) noexcept {
        window_start_ns_ = now_ns;
        window_idle_ns_ = idle_ns;
        window_bytes_ = bytes;
        window_position_ = position;
    }

    DebloatSettings settings_;
    std::uint64_t since_clock_ = 0;
    std::uint32_t stride_ = 1;
    bool started_ = false, averaging_ = false;
    std::uint64_t window_start_ns_ = 0, window_idle_ns_ = 0, window_bytes_ = 0, window_position_ = 0;
    double segment_rate_ = 0, byte_rate_ = 0;
    std::uint32_t published_ = 0;
};

}  // namespace shmchan::detail
