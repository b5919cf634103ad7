// Seeded random numbers for the data pipeline.
//
// Every random decision (sampler order, each sample's augmentation) draws
// from a generator seeded by a hash of (seed, stream ids...), so a result
// depends on the seed and on what is drawn, never on thread count or
// scheduling. Uniform integers use rejection sampling on the raw 64-bit
// output rather than std::uniform_int_distribution, whose algorithm is the
// standard library's choice: the same seed gives the same data everywhere.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <random>

namespace tandem::worker {

/// SplitMix64 finaliser: a well-mixed 64-bit hash step.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// A seed derived from a base seed and stream ids (epoch, index, view, ...).
inline uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> streams) {
  uint64_t h = mix64(seed);
  for (uint64_t s : streams) h = mix64(h ^ mix64(s + 0x632BE59BD9B4E019ull));
  return h;
}

/// mt19937_64 with portable uniform draws.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  Rng(uint64_t seed, std::initializer_list<uint64_t> streams)
      : engine_(derive_seed(seed, streams)) {}

  uint64_t next() { return engine_(); }
  /// Uniform integer in [0, n), n > 0 (unbiased: rejection sampling).
  uint64_t below(uint64_t n) {
    const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n + 1) % n;
    uint64_t x = engine_();
    while (x > limit) x = engine_();
    return x % n;
  }
  /// Uniform integer in [lo, hi] (inclusive, as Python's random.randint).
  int64_t integer(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool bernoulli(double p) { return uniform() < p; }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace tandem::worker
