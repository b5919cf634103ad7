#include "tandem/worker/data/synth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tandem::worker {
namespace {

namespace fs = std::filesystem;

// Stream ids of derive_seed: each kind of randomness has its own stream.
constexpr uint64_t kDomainStream = 0xD0;
constexpr uint64_t kCameraStream = 0xCA;
constexpr uint64_t kIdentityStream = 0x1D;
constexpr uint64_t kPlanStream = 0x91;
constexpr uint64_t kDistractorStream = 0xD1;
constexpr uint64_t kImageStream = 0x1A;

constexpr int64_t kMaxFrame = 1'000'000;  // six digits
constexpr int64_t kFrameStepMax = 30;     // frames between two images of a track
constexpr int64_t kDistractorFrameSlot = 8;
constexpr char kMarkerFile[] = "tandem_synth.txt";

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------
// Small numeric helpers

// Rounds half up and clamps to [0, 255]. x + 0.5 truncated is exact rounding
// for the non-negative values it sees, and far cheaper than std::lround in
// the per-pixel loops.
uint8_t to_byte(double x) {
  if (x <= 0.0) return 0;
  if (x >= 255.0) return 255;
  return static_cast<uint8_t>(x + 0.5);  // NOLINT(bugprone-incorrect-roundings)
}

uint8_t clamp_byte(int x) {
  return static_cast<uint8_t>(x < 0 ? 0 : (x > 255 ? 255 : x));
}

// Standard normal from two uniforms (Box-Muller): portable, unlike
// std::normal_distribution.
double normal(Rng& rng) {
  const double u1 = 1.0 - rng.uniform();  // (0, 1]
  const double u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

// Cheap per-pixel stream (SplitMix64) for noise and textures.
struct PixelRng {
  uint64_t state;
  uint64_t next() { return mix64(state++); }
};

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

Rgb hsv_to_rgb(double hue_degrees, double s, double v) {
  double h = std::fmod(hue_degrees, 360.0);
  if (h < 0) h += 360.0;
  const double c = v * s;
  const double x = c * (1.0 - std::fabs(std::fmod(h / 60.0, 2.0) - 1.0));
  const double m = v - c;
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h / 60.0)) {
    case 0: r = c, g = x; break;
    case 1: r = x, g = c; break;
    case 2: g = c, b = x; break;
    case 3: g = x, b = c; break;
    case 4: r = x, b = c; break;
    default: r = c, b = x; break;
  }
  return {to_byte((r + m) * 255), to_byte((g + m) * 255), to_byte((b + m) * 255)};
}

Rgb scaled(const Rgb& c, double f) {
  return {to_byte(c[0] * f), to_byte(c[1] * f), to_byte(c[2] * f)};
}

Rgb jittered(const Rgb& c, Rng& rng, double sigma) {
  const double common = normal(rng) * sigma;
  return {to_byte(c[0] + common + normal(rng) * sigma * 0.4),
          to_byte(c[1] + common + normal(rng) * sigma * 0.4),
          to_byte(c[2] + common + normal(rng) * sigma * 0.4)};
}

double colour_distance(const Rgb& a, const Rgb& b) {
  const double dr = a[0] - b[0], dg = a[1] - b[1], db = a[2] - b[2];
  return std::sqrt(dr * dr + dg * dg + db * db);
}

// ---------------------------------------------------------------------------
// Identities

Rgb garment_colour(const DomainStyle& d, Rng& rng, double darker = 0.0) {
  if (rng.bernoulli(d.achromatic)) {
    // Black, grey or white; dark_bias pushes the level towards black.
    const double level = std::pow(rng.uniform(), 1.0 + 2.5 * std::min(1.0, d.dark_bias + darker));
    const double grey = 18.0 + 222.0 * level;
    const double tint = normal(rng) * 4.0;
    return {to_byte(grey + tint), to_byte(grey), to_byte(grey - tint)};
  }
  const double hue =
      d.hues[static_cast<size_t>(rng.below(d.hues.size()))] + normal(rng) * d.hue_spread;
  const double s = std::min(1.0, std::max(0.12, d.saturation + normal(rng) * 0.18));
  const double v = std::min(1.0, std::max(0.12, d.brightness + normal(rng) * 0.16));
  return hsv_to_rgb(hue, s, v);
}

// A second colour that stands out from `base` (stripes, checks).
Rgb accent_colour(const DomainStyle& d, const Rgb& base, Rng& rng) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    const Rgb c = garment_colour(d, rng);
    if (colour_distance(c, base) > 90.0) return c;
  }
  const double luma = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2];
  return luma > 128 ? Rgb{25, 25, 30} : Rgb{235, 235, 230};
}

Pattern draw_pattern(Rng& rng, double p) {
  if (!rng.bernoulli(p)) return Pattern::kSolid;
  return rng.bernoulli(0.6) ? Pattern::kStripes : Pattern::kChecks;
}

constexpr Rgb kHairColours[] = {
    {22, 18, 16}, {58, 38, 24}, {105, 70, 42}, {190, 160, 105}, {150, 148, 145}};
constexpr double kHairOdds[] = {0.45, 0.25, 0.13, 0.1, 0.07};
constexpr Rgb kSkinTones[] = {
    {236, 200, 176}, {214, 168, 134}, {180, 130, 95}, {128, 86, 60}, {92, 62, 44}};

template <size_t N>
size_t pick(const double (&odds)[N], Rng& rng) {
  double u = rng.uniform();
  for (size_t i = 0; i + 1 < N; ++i) {
    if (u < odds[i]) return i;
    u -= odds[i];
  }
  return N - 1;
}

// ---------------------------------------------------------------------------
// Rasterising in person space
//
// Person space: v runs from the top of the head (0) to the soles (1), u is
// horizontal in the same units with 0 at the body's axis. In front and back
// views +u is the person's left; in a side view +u is where they face.

struct Frame {
  double top = 0;     // pixel row of v = 0
  double axis = 0;    // pixel column of u = 0 at mid height
  double scale = 1;   // pixels per unit (the person's height in pixels)
  double shear = 0;   // x += shear · (y - mid)
  double mid = 0;     // pixel row the shear pivots on
  double mirror = 1;  // +1: +u to the right of the image, -1: to the left
};

// Paints the pixels of [u0, u1] × [v0, v1] where inside(u, v) holds with
// colour(u, v).
template <class Inside, class Colour>
void paint(Image& image, const Frame& f, double u0, double u1, double v0, double v1,
           const Inside& inside, const Colour& colour) {
  const int64_t y_begin =
      std::max<int64_t>(0, static_cast<int64_t>(std::floor(f.top + v0 * f.scale)));
  const int64_t y_end =
      std::min<int64_t>(image.height, static_cast<int64_t>(std::ceil(f.top + v1 * f.scale)));
  const double lo = std::min(f.mirror * u0, f.mirror * u1);
  const double hi = std::max(f.mirror * u0, f.mirror * u1);
  const double inv = 1.0 / f.scale;
  for (int64_t y = y_begin; y < y_end; ++y) {
    const double yc = static_cast<double>(y) + 0.5;
    const double v = (yc - f.top) * inv;
    const double offset = f.axis + f.shear * (yc - f.mid);
    const int64_t x_begin =
        std::max<int64_t>(0, static_cast<int64_t>(std::floor(offset + lo * f.scale)));
    const int64_t x_end =
        std::min<int64_t>(image.width, static_cast<int64_t>(std::ceil(offset + hi * f.scale)));
    uint8_t* p = image.row(y) + 3 * x_begin;
    for (int64_t x = x_begin; x < x_end; ++x, p += 3) {
      const double u = f.mirror * ((static_cast<double>(x) + 0.5 - offset) * inv);
      if (!inside(u, v)) continue;
      const Rgb c = colour(u, v);
      p[0] = c[0];
      p[1] = c[1];
      p[2] = c[2];
    }
  }
}

struct Solid {
  Rgb c;
  Rgb operator()(double, double) const { return c; }
};

struct Garment {
  Rgb base;
  Rgb accent;
  Pattern pattern;
  double period;
  double shade = 1.0;
  Rgb operator()(double u, double v) const {
    bool odd = false;
    switch (pattern) {
      case Pattern::kSolid: break;
      case Pattern::kStripes: odd = static_cast<int64_t>(std::floor(v / period)) & 1; break;
      case Pattern::kChecks:
        odd = (static_cast<int64_t>(std::floor(v / period)) +
               static_cast<int64_t>(std::floor((u + 8.0) / period))) &
              1;
        break;
    }
    return shade == 1.0 ? (odd ? accent : base) : scaled(odd ? accent : base, shade);
  }
};

void rect(Image& image, const Frame& f, double u0, double u1, double v0, double v1, const Rgb& c) {
  paint(
      image, f, u0, u1, v0, v1,
      [&](double u, double v) { return u >= u0 && u <= u1 && v >= v0 && v <= v1; }, Solid{c});
}

template <class Colour>
void ellipse(Image& image, const Frame& f, double cu, double cv, double ru, double rv,
             const Colour& colour) {
  const double iu = 1.0 / ru, iv = 1.0 / rv;
  paint(
      image, f, cu - ru, cu + ru, cv - rv, cv + rv,
      [&](double u, double v) {
        const double a = (u - cu) * iu, b = (v - cv) * iv;
        return a * a + b * b <= 1.0;
      },
      colour);
}

// A thick segment from (ua, va) to (ub, vb) with round ends.
template <class Colour>
void capsule(Image& image, const Frame& f, double ua, double va, double ub, double vb, double r,
             const Colour& colour) {
  const double du = ub - ua, dv = vb - va;
  const double len2 = std::max(1e-12, du * du + dv * dv);
  const double r2 = r * r;
  paint(
      image, f, std::min(ua, ub) - r, std::max(ua, ub) + r, std::min(va, vb) - r,
      std::max(va, vb) + r,
      [&](double u, double v) {
        const double t = std::min(1.0, std::max(0.0, ((u - ua) * du + (v - va) * dv) / len2));
        const double eu = u - ua - t * du, ev = v - va - t * dv;
        return eu * eu + ev * ev <= r2;
      },
      colour);
}

// ---------------------------------------------------------------------------
// Backgrounds

void render_background(Image& image, const CameraStyle& camera, const DomainStyle& domain,
                       Rng& rng) {
  const int64_t h = image.height, w = image.width;
  const Rgb top = jittered(camera.background_top, rng, 6.0);
  const Rgb bottom = jittered(camera.background_bottom, rng, 6.0);
  const double horizon = (camera.horizon + normal(rng) * 0.03) * static_cast<double>(h);
  const double texture = domain.texture;
  // Where along the scene this crop sits: the person walks, the box moves.
  const auto shift = static_cast<int64_t>(rng.below(static_cast<uint64_t>(4 * w)));
  PixelRng layout{camera.scene};
  const int64_t cell_w = std::max<int64_t>(6, w / 3 + static_cast<int64_t>(layout.next() % 8));
  const int64_t cell_h = std::max<int64_t>(6, h / 7 + static_cast<int64_t>(layout.next() % 8));
  const Rgb window = {static_cast<uint8_t>(layout.next() % 120),
                      static_cast<uint8_t>(layout.next() % 120),
                      static_cast<uint8_t>(layout.next() % 140)};
  // Coarse blocks of texture, 4 × 4 pixels each.
  const int64_t bw = (w + 3) / 4 + 1, bh = (h + 3) / 4 + 1;
  std::vector<int16_t> blocks(static_cast<size_t>(bw * bh));
  PixelRng pixels{rng.next()};
  const int amplitude = static_cast<int>(std::lround(texture * 26.0));
  for (auto& b : blocks) {
    b = amplitude == 0 ? 0
                       : static_cast<int16_t>(
                             static_cast<int>(pixels.next() % (2 * amplitude + 1)) - amplitude);
  }
  for (int64_t y = 0; y < h; ++y) {
    const double t = h > 1 ? static_cast<double>(y) / static_cast<double>(h - 1) : 0.0;
    double base[3] = {0.0, 0.0, 0.0};
    bool ground = false;
    switch (domain.background) {
      case BackgroundKind::kGradient:
        for (int c = 0; c < 3; ++c) base[c] = top[c] + (bottom[c] - top[c]) * t;
        break;
      case BackgroundKind::kGround:
      case BackgroundKind::kFacade: {
        ground = static_cast<double>(y) >= horizon;
        const double shade = ground ? 0.9 + 0.15 * t : 1.0 - 0.12 * t;
        for (int c = 0; c < 3; ++c) base[c] = (ground ? bottom[c] : top[c]) * shade;
        break;
      }
    }
    // Paving: a darker line every few rows, wider apart near the camera.
    int line = 0;
    if (ground) {
      const double depth = static_cast<double>(y) - horizon;
      const int64_t spacing = 4 + static_cast<int64_t>(depth / 6.0);
      if (static_cast<int64_t>(depth) % spacing == 0) line = -static_cast<int>(texture * 30.0);
    }
    int base_int[3], window_mix[3];
    for (int c = 0; c < 3; ++c) {
      // Non-negative: truncating x + 0.5 rounds.
      // NOLINTNEXTLINE(bugprone-incorrect-roundings)
      base_int[c] = static_cast<int>(base[c] + 0.5);
      const double mixed = base[c] * 0.45 + window[c] * 0.55;
      // NOLINTNEXTLINE(bugprone-incorrect-roundings)
      window_mix[c] = static_cast<int>(mixed + 0.5);
    }
    const bool windows = domain.background == BackgroundKind::kFacade && !ground;
    const int64_t sy = y % cell_h;
    const bool window_row = windows && sy > cell_h / 4 && sy < cell_h - cell_h / 5;
    uint8_t* p = image.row(y);
    const int16_t* block_row = blocks.data() + (y / 4) * bw;
    for (int64_t x = 0; x < w; ++x, p += 3) {
      int extra = block_row[x / 4] + line;
      const int* colour = base_int;
      if (window_row) {
        const int64_t sx = (x + shift) % cell_w;
        if (sx > cell_w / 5 && sx < cell_w - cell_w / 5) {
          colour = window_mix;
          extra /= 2;
        }
      }
      p[0] = clamp_byte(colour[0] + extra);
      p[1] = clamp_byte(colour[1] + extra);
      p[2] = clamp_byte(colour[2] + extra);
    }
  }
}

// ---------------------------------------------------------------------------
// Camera effects

void box_blur(Image& image, int radius) {
  if (radius <= 0) return;
  const int64_t h = image.height, w = image.width;
  // The mean of the taps as a 16.16 fixed-point multiply (no division).
  const int scale = (65536 + radius) / (2 * radius + 1);
  std::vector<uint8_t> tmp(image.pixels.size());
  // Horizontal pass into tmp, vertical pass back; edges repeat.
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* src = image.row(y);
    uint8_t* dst = tmp.data() + y * w * 3;
    for (int c = 0; c < 3; ++c) {
      int sum = 0;
      for (int k = -radius; k <= radius; ++k) {
        sum += src[3 * std::min<int64_t>(w - 1, std::max<int64_t>(0, k)) + c];
      }
      for (int64_t x = 0; x < w; ++x) {
        dst[3 * x + c] = static_cast<uint8_t>((sum * scale + 32768) >> 16);
        const int64_t out = std::max<int64_t>(0, x - radius);
        const int64_t in = std::min<int64_t>(w - 1, x + radius + 1);
        sum += src[3 * in + c] - src[3 * out + c];
      }
    }
  }
  const int64_t stride = w * 3;
  for (int64_t i = 0; i < stride; ++i) {
    int sum = 0;
    for (int k = -radius; k <= radius; ++k) {
      sum += tmp[std::min<int64_t>(h - 1, std::max<int64_t>(0, k)) * stride + i];
    }
    for (int64_t y = 0; y < h; ++y) {
      image.pixels[y * stride + i] = static_cast<uint8_t>((sum * scale + 32768) >> 16);
      const int64_t out = std::max<int64_t>(0, y - radius);
      const int64_t in = std::min<int64_t>(h - 1, y + radius + 1);
      sum += tmp[in * stride + i] - tmp[out * stride + i];
    }
  }
}

// Illumination gain, colour cast (one table per channel) and sensor noise.
void expose(Image& image, const CameraStyle& camera, Rng& rng) {
  const double gain = camera.gain * std::exp(normal(rng) * 0.06);
  uint8_t lut[3][256];
  for (int c = 0; c < 3; ++c) {
    const double g = gain * camera.cast[c];
    for (int i = 0; i < 256; ++i) lut[c][i] = to_byte(i * g);
  }
  // Triangular noise in [-amplitude, amplitude], the same on the three
  // channels (luminance noise), 16.16 fixed point.
  const int amplitude = static_cast<int>(std::lround(camera.noise * 256.0));
  PixelRng noise{rng.next()};
  uint8_t* p = image.pixels.data();
  const int64_t n = image.height * image.width;
  uint64_t bits = 0;
  for (int64_t i = 0; i < n; ++i, p += 3) {
    if ((i & 3) == 0) bits = noise.next();
    const int a = static_cast<int>(bits & 0xFF), b = static_cast<int>((bits >> 8) & 0xFF);
    bits >>= 16;
    const int delta = ((a + b - 255) * amplitude) >> 16;
    for (int c = 0; c < 3; ++c) {
      const int value = lut[c][p[c]] + delta;
      p[c] = static_cast<uint8_t>(value < 0 ? 0 : (value > 255 ? 255 : value));
    }
  }
}

// ---------------------------------------------------------------------------
// The person

Viewpoint draw_viewpoint(const CameraStyle& camera, Rng& rng) {
  const double total = camera.view_weights[0] + camera.view_weights[1] + camera.view_weights[2];
  const double u = rng.uniform() * total;
  if (u < camera.view_weights[0]) return Viewpoint::kFront;
  if (u < camera.view_weights[0] + camera.view_weights[1]) return Viewpoint::kBack;
  return Viewpoint::kSide;
}

void draw_occluder(Image& image, const DomainStyle& domain, Rng& rng) {
  const auto w = static_cast<double>(image.width);
  const auto h = static_cast<double>(image.height);
  Frame pixels;  // identity: u, v in pixels
  pixels.scale = 1.0;
  if (rng.bernoulli(0.4)) {  // a pole or tree trunk
    const double grey = 50.0 + 90.0 * rng.uniform();
    const Rgb c = {to_byte(grey + 10), to_byte(grey), to_byte(grey - 8)};
    const double x = w * rng.uniform(0.05, 0.95), half = w * rng.uniform(0.03, 0.08);
    rect(image, pixels, x - half, x + half, 0.0, h, c);
    rect(image, pixels, x - half, x - half * 0.4, 0.0, h, scaled(c, 1.25));  // highlight
    return;
  }
  // A box from the bottom or one side: a car, a bicycle, a bush, a bin.
  Rgb c = garment_colour(domain, rng);
  c = scaled(c, 0.8);
  const Garment body{c, scaled(c, 0.7), rng.bernoulli(0.5) ? Pattern::kStripes : Pattern::kSolid,
                     rng.uniform(3.0, 8.0)};
  double x0 = 0, x1 = w, y0 = 0, y1 = h;
  switch (rng.below(3)) {
    case 0: y0 = h * rng.uniform(0.55, 0.8); break;  // bottom
    case 1:
      x1 = w * rng.uniform(0.15, 0.4);
      y0 = h * rng.uniform(0.0, 0.5);
      break;  // left
    default:
      x0 = w * rng.uniform(0.6, 0.85);
      y0 = h * rng.uniform(0.0, 0.5);
      break;  // right
  }
  paint(
      image, pixels, x0, x1, y0, y1,
      [&](double u, double v) { return u >= x0 && u <= x1 && v >= y0 && v <= y1; }, body);
}

Image render(const Identity& p, const CameraStyle& camera, const DomainStyle& domain, Rng& rng,
             int64_t height, int64_t width, bool distractor) {
  Image image(height, width);
  const auto h = static_cast<double>(height);
  const auto w = static_cast<double>(width);
  render_background(image, camera, domain, rng);

  // Pose and viewpoint.
  const Viewpoint view = draw_viewpoint(camera, rng);
  const bool side = view == Viewpoint::kSide;
  const double phase = 2.0 * kPi * rng.uniform();
  const double swing = rng.uniform(0.12, 0.45) * std::sin(phase);

  // Framing: how much of the box the person fills, and where.
  Frame f;
  if (distractor) {  // badly framed detections: half a person, or two
    f.scale = h * rng.uniform(0.5, 1.6);
    f.top = h * rng.uniform(-0.5, 0.35);
    f.axis = w * rng.uniform(0.15, 0.85);
  } else {
    f.scale = h * rng.uniform(0.84, 0.96) * p.body_height;
    f.top = (h - f.scale) * rng.uniform(0.25, 0.75) + normal(rng) * 0.015 * h;
    f.axis = w * 0.5 + normal(rng) * 0.035 * w;
  }
  f.shear = camera.shear + normal(rng) * 0.02;
  f.mid = f.top + 0.5 * f.scale;
  const double facing = rng.bernoulli(0.5) ? 1.0 : -1.0;
  f.mirror = view == Viewpoint::kFront ? 1.0 : (view == Viewpoint::kBack ? -1.0 : facing);

  const double bw = p.body_width;
  const double shoulder = (side ? 0.072 : 0.105) * bw;  // half widths
  const double waist = (side ? 0.066 : 0.09) * bw;
  const double torso_top = 0.155, torso_bottom = 0.5;
  const Garment upper{p.upper, p.upper_accent, p.upper_pattern, p.stripe_period};
  const Garment lower{p.lower, p.lower_accent, p.lower_pattern, p.stripe_period * 1.3};
  Garment upper_far = upper, lower_far = lower;
  upper_far.shade = lower_far.shade = 0.78;
  const Solid skin{p.skin}, far_skin{scaled(p.skin, 0.8)}, hair{p.hair}, shoes{p.shoes};
  const double head_v = 0.075, head_ru = 0.05, head_rv = 0.066;
  const double long_hair_end = 0.1 + 0.22 * p.hair_length;
  // In side views the handbag is hidden by the body on the far side.
  const bool bag_near = p.bag_on_left == (facing > 0);
  const double bag_side = p.bag_on_left ? 1.0 : -1.0;

  auto draw_handbag = [&] {
    const double cu = side ? 0.0 : bag_side * (shoulder + 0.035);
    rect(image, f, cu - 0.006, cu + 0.006, 0.19, 0.41, scaled(p.bag_colour, 0.8));
    rect(image, f, cu - 0.036, cu + 0.036, 0.4, 0.51, p.bag_colour);
  };
  if (p.bag == Bag::kHandbag && side && !bag_near) draw_handbag();

  // Long hair falls behind the shoulders (seen beside the neck from the front).
  if (view == Viewpoint::kFront && p.hair_length > 0.5) {
    rect(image, f, -0.06, 0.06, 0.06, long_hair_end, p.hair);
  }

  // Legs: a thigh and a shin each, feet and shoes.
  const double hip_v = 0.49, leg = 0.45;
  struct Leg {
    double hip_u, foot_u, foot_v;
  };
  Leg legs[2];
  for (int i = 0; i < 2; ++i) {
    const double s = i == 0 ? 1.0 : -1.0;
    if (side) {
      const double angle = s * swing;
      legs[i] = {0.0, leg * std::sin(angle), hip_v + leg * std::cos(angle)};
    } else {  // seen from the front or back: the swinging leg looks shorter
      const double lift = 0.06 * std::max(0.0, s * swing);
      legs[i] = {s * 0.045 * bw, s * (0.05 * bw + 0.015 * std::fabs(swing)),
                 hip_v + leg * (1.0 - lift)};
    }
  }
  const double thigh_r = 0.038 * bw, shin_r = 0.031 * bw;
  const bool shins_bare = p.shorts;
  for (int order = 0; order < 2; ++order) {
    // Side view: the far leg (index 1) first and darker.
    const int i = side ? 1 - order : order;
    const bool far = side && i == 1;
    const Leg& l = legs[i];
    const double knee_u = 0.5 * (l.hip_u + l.foot_u), knee_v = 0.5 * (hip_v + l.foot_v);
    const Garment& trousers = far ? lower_far : lower;
    if (shins_bare) {
      capsule(image, f, knee_u, knee_v, l.foot_u, l.foot_v - 0.02, shin_r, far ? far_skin : skin);
    } else {
      capsule(image, f, knee_u, knee_v, l.foot_u, l.foot_v - 0.02, shin_r, trousers);
    }
    capsule(image, f, l.hip_u, hip_v, knee_u, knee_v, thigh_r, trousers);
    const double toe = side ? 0.018 : 0.0;
    ellipse(image, f, l.foot_u + toe, l.foot_v - 0.012, side ? 0.042 : 0.03, 0.018,
            far ? Solid{scaled(p.shoes, 0.8)} : shoes);
  }
  // Hips: the top of the trousers joins the legs.
  rect(image, f, -waist, waist, 0.46, 0.53, p.lower);

  // Arms: shoulder → elbow → hand, swinging against the legs.
  const double arm = 0.3, shoulder_v = 0.185, arm_r = 0.027 * bw;
  auto draw_arm = [&](double s, bool far) {
    const double su = side ? 0.0 : s * (shoulder - 0.012);
    const double angle = side ? -s * swing : 0.0;
    const double hand_u = side ? su + arm * std::sin(angle) : su + s * 0.02 * bw;
    const double hand_v =
        shoulder_v + arm * (side ? std::cos(angle) : 1.0 - 0.04 * std::fabs(swing));
    const double elbow_u = 0.5 * (su + hand_u), elbow_v = 0.5 * (shoulder_v + hand_v);
    const Garment& sleeve = far ? upper_far : upper;
    capsule(image, f, su, shoulder_v, elbow_u, elbow_v, arm_r, sleeve);
    if (p.long_sleeves) {
      capsule(image, f, elbow_u, elbow_v, hand_u, hand_v, arm_r * 0.9, sleeve);
    } else {
      capsule(image, f, elbow_u, elbow_v, hand_u, hand_v, arm_r * 0.8, far ? far_skin : skin);
    }
    ellipse(image, f, hand_u, hand_v + 0.01, 0.021, 0.024, far ? far_skin : skin);
  };
  if (side) draw_arm(-1.0, true);

  // Side view: the backpack sticks out behind.
  if (p.bag == Bag::kBackpack && side) {
    rect(image, f, -shoulder - 0.065, -shoulder + 0.01, 0.19, 0.42, p.bag_colour);
  }

  // Torso: a trapezoid, shaded like a cylinder.
  {
    const double span = torso_bottom - torso_top;
    paint(
        image, f, -shoulder, shoulder, torso_top, torso_bottom,
        [&](double u, double v) {
          const double half = shoulder + (waist - shoulder) * (v - torso_top) / span;
          return v >= torso_top && v <= torso_bottom && std::fabs(u) <= half;
        },
        [&](double u, double v) {
          const double half = shoulder + (waist - shoulder) * (v - torso_top) / span;
          const double t = u / half;
          Garment g = upper;
          g.shade = 1.0 - 0.22 * t * t;
          return g(u, v);
        });
  }
  if (p.bag == Bag::kBackpack && view == Viewpoint::kBack) {
    rect(image, f, -0.08 * bw, 0.08 * bw, 0.19, 0.43, p.bag_colour);
    rect(image, f, -0.08 * bw, 0.08 * bw, 0.19, 0.25, scaled(p.bag_colour, 0.75));  // flap
  }
  if (p.bag == Bag::kBackpack && view == Viewpoint::kFront) {  // straps only
    const Rgb strap = scaled(p.bag_colour, 0.85);
    rect(image, f, -0.062 * bw, -0.046 * bw, 0.16, 0.34, strap);
    rect(image, f, 0.046 * bw, 0.062 * bw, 0.16, 0.34, strap);
  }
  // Neck.
  rect(image, f, -0.022, 0.022, 0.12, 0.165,
       view == Viewpoint::kBack ? scaled(p.skin, 0.9) : p.skin);

  if (side) {
    draw_arm(1.0, false);
  } else {
    draw_arm(1.0, false);
    draw_arm(-1.0, false);
  }

  // Head and hair.
  switch (view) {
    case Viewpoint::kBack:
      ellipse(image, f, 0.0, head_v, head_ru, head_rv, hair);
      if (p.hair_length > 0.5) rect(image, f, -0.055, 0.055, 0.07, long_hair_end, p.hair);
      break;
    case Viewpoint::kFront: {
      ellipse(image, f, 0.0, head_v, head_ru, head_rv, skin);
      const double fringe = head_v - head_rv + 0.03 + 0.012 * p.hair_length;
      ellipse(image, f, 0.0, head_v, head_ru * 1.06, head_rv * 1.04, [&](double u, double v) {
        return v < fringe || std::fabs(u) > head_ru * 0.82 ? p.hair : p.skin;
      });
      break;
    }
    case Viewpoint::kSide: {
      if (p.hair_length > 0.5) rect(image, f, -0.06, -0.005, 0.07, long_hair_end, p.hair);
      const double fringe = head_v - head_rv + 0.028;
      ellipse(image, f, 0.0, head_v, head_ru * 0.95, head_rv,
              [&](double u, double v) { return v < fringe || u < -0.005 ? p.hair : p.skin; });
      break;
    }
  }
  if (p.bag == Bag::kHandbag && (!side || bag_near)) draw_handbag();

  if (distractor ? rng.bernoulli(0.5) : rng.bernoulli(domain.occlusion)) {
    draw_occluder(image, domain, rng);
  }
  box_blur(image, camera.blur_radius);
  expose(image, camera, rng);
  return image;
}

// ---------------------------------------------------------------------------
// Domains

DomainStyle hashed_domain(const std::string& name) {
  DomainStyle d;
  d.name = name;
  d.hash = fnv1a(name);
  Rng rng(d.hash, {kDomainStream});
  const int64_t hues = rng.integer(3, 7);
  for (int64_t i = 0; i < hues; ++i) d.hues.push_back(rng.uniform(0.0, 360.0));
  d.hue_spread = rng.uniform(15.0, 40.0);
  d.achromatic = rng.uniform(0.2, 0.6);
  d.saturation = rng.uniform(0.3, 0.8);
  d.brightness = rng.uniform(0.35, 0.75);
  d.dark_bias = rng.uniform(0.0, 0.7);
  d.illumination = rng.uniform(0.8, 1.15);
  d.gain_spread = rng.uniform(0.08, 0.3);
  d.cast_spread = rng.uniform(0.03, 0.12);
  d.noise = rng.uniform(2.0, 8.0);
  d.blur = rng.uniform(0.1, 0.6);
  d.occlusion = rng.uniform(0.1, 0.4);
  d.shorts = rng.uniform(0.0, 0.5);
  d.short_sleeves = rng.uniform(0.05, 0.7);
  d.bags = rng.uniform(0.3, 0.7);
  d.long_hair = rng.uniform(0.2, 0.5);
  d.patterned = rng.uniform(0.1, 0.5);
  d.background = static_cast<BackgroundKind>(rng.below(3));
  d.background_base = {static_cast<uint8_t>(rng.integer(60, 200)),
                       static_cast<uint8_t>(rng.integer(60, 200)),
                       static_cast<uint8_t>(rng.integer(60, 200))};
  d.background_spread = rng.uniform(20.0, 60.0);
  d.texture = rng.uniform(0.2, 0.8);
  return d;
}

void check(bool ok, const char* field, const std::string& expected, const std::string& got) {
  if (!ok) {
    throw std::invalid_argument("SynthOptions." + std::string(field) + " must be " + expected +
                                ", got " + got);
  }
}

void check_range(int64_t value, int64_t lo, int64_t hi, const char* field) {
  check(value >= lo && value <= hi, field,
        "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", std::to_string(value));
}

// Everything the renderer of a whole data set shares between images.
struct Scene {
  DomainStyle domain;
  std::vector<CameraStyle> cameras;  // index camera - 1
};

Scene make_scene(const SynthOptions& options) {
  Scene scene;
  scene.domain = domain_style(options.domain);
  for (int64_t c = 1; c <= options.cameras; ++c) {
    Rng rng(scene.domain.hash, {kCameraStream, static_cast<uint64_t>(c)});
    scene.cameras.push_back(sample_camera(scene.domain, rng));
  }
  return scene;
}

Identity identity_of(const SynthOptions& options, const DomainStyle& domain, int64_t identity) {
  Rng rng(options.seed, {kIdentityStream, domain.hash, static_cast<uint64_t>(identity)});
  return sample_identity(domain, rng);
}

Image render_planned(const SynthOptions& options, const Scene& scene, const SynthImage& planned) {
  const Identity person = identity_of(options, scene.domain, planned.identity);
  Rng rng(options.seed, {kImageStream, scene.domain.hash, static_cast<uint64_t>(planned.index)});
  return render(person, scene.cameras[static_cast<size_t>(planned.camera - 1)], scene.domain, rng,
                options.height, options.width, planned.pid == 0);
}

std::string describe(const SynthOptions& o) {
  std::ostringstream out;
  out << "domain=" << o.domain << "\nids=" << o.ids << "\ncameras=" << o.cameras
      << "\nseed=" << o.seed << "\nheight=" << o.height << "\nwidth=" << o.width
      << "\nimages_per_camera=" << o.images_per_camera
      << "\nmin_cameras_per_id=" << o.min_cameras_per_id
      << "\nquery_cameras_per_id=" << o.query_cameras_per_id << "\njpeg_quality=" << o.jpeg_quality
      << "\ndistractor_fraction=" << o.distractor_fraction << "\n";
  return out.str();
}

void write_marker(const fs::path& out_dir, const SynthOptions& options, const std::string& extra) {
  const fs::path path = out_dir / kMarkerFile;
  std::ofstream out(path, std::ios::trunc);
  out << "# Written by tandem synth (worker/data/synth.cpp, docs/synthetic_data.md).\n"
      << "# Rendering into this folder again replaces its images.\n"
      << describe(options) << extra;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// Makes the split folders and deletes a previous render's images that the
// plan does not have (the others are compared and kept when unchanged); a
// folder with files that this function did not write is refused.
void prepare_folders(const fs::path& out_dir, const std::vector<SynthImage>& plan) {
  const bool ours = fs::exists(out_dir / kMarkerFile);
  std::set<std::string> planned;
  for (const SynthImage& image : plan) {
    planned.insert(std::string(split_folder(image.split)) + "/" + image.file_name());
  }
  for (SynthSplit split : {SynthSplit::kTrain, SynthSplit::kQuery, SynthSplit::kGallery}) {
    const fs::path folder = out_dir / split_folder(split);
    if (fs::exists(folder)) {
      if (!fs::is_directory(folder)) {
        throw std::runtime_error(folder.string() + " exists and is not a folder");
      }
      if (!ours && !fs::is_empty(folder)) {
        throw std::runtime_error("refusing to render into " + out_dir.string() + ": " +
                                 folder.string() + " holds files and there is no " + kMarkerFile +
                                 " (not made by tandem synth)");
      }
      std::vector<fs::path> stale;
      for (const auto& entry : fs::directory_iterator(folder)) {
        if (entry.is_regular_file() && entry.path().extension() == ".jpg" &&
            planned.count(std::string(split_folder(split)) + "/" +
                          entry.path().filename().string()) == 0) {
          stale.push_back(entry.path());
        }
      }
      for (const auto& path : stale) fs::remove(path);
    }
    fs::create_directories(folder);
  }
}

// True when `path` already holds exactly `bytes`. Re-rendering the same
// options then writes nothing: on ext4, replacing tens of thousands of
// files costs more system time than rendering them (inode allocation).
bool holds(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  if (error || size != bytes.size()) return false;
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> existing(bytes.size());
  in.read(reinterpret_cast<char*>(existing.data()), static_cast<std::streamsize>(existing.size()));
  return in.gcount() == static_cast<std::streamsize>(existing.size()) && existing == bytes;
}

}  // namespace

// ---------------------------------------------------------------------------

void SynthOptions::validate() const {
  check(!domain.empty() && domain.size() <= 64, "domain", "a name of 1 to 64 characters",
        "\"" + domain + "\"");
  check_range(ids, 2, 9999, "ids");
  check_range(cameras, 2, 9, "cameras");
  check_range(height, 32, 1024, "height");
  check_range(width, 16, 1024, "width");
  check_range(images_per_camera, 1, 1000, "images_per_camera");
  check_range(min_cameras_per_id, 2, cameras, "min_cameras_per_id");
  check_range(query_cameras_per_id, 1, cameras, "query_cameras_per_id");
  check_range(jpeg_quality, 1, 100, "jpeg_quality");
  check(distractor_fraction >= 0.0 && distractor_fraction <= 1.0, "distractor_fraction",
        "in [0, 1]", std::to_string(distractor_fraction));
  check_range(threads, 0, 1024, "threads");
}

DomainStyle domain_style(const std::string& name) {
  DomainStyle d = hashed_domain(name);
  if (name == "market") {
    // Market-1501: a summer campus; light, colourful clothes, shorts and
    // T-shirts, bright cameras, pavement.
    d.hues = {0, 25, 50, 120, 200, 225, 280, 330};
    d.hue_spread = 20;
    d.achromatic = 0.35;
    d.saturation = 0.62;
    d.brightness = 0.72;
    d.dark_bias = 0.15;
    d.illumination = 1.08;
    d.gain_spread = 0.12;
    d.cast_spread = 0.05;
    d.noise = 3.5;
    d.blur = 0.25;
    d.occlusion = 0.2;
    d.shorts = 0.45;
    d.short_sleeves = 0.65;
    d.bags = 0.5;
    d.long_hair = 0.3;
    d.patterned = 0.3;
    d.background = BackgroundKind::kGround;
    d.background_base = {150, 152, 140};
    d.background_spread = 35;
    d.texture = 0.4;
  } else if (name == "duke") {
    // DukeMTMC-reID: a winter campus; dark coats and long trousers, dimmer
    // and more occluded views (cars, trees).
    d.hues = {0, 30, 100, 210, 225};
    d.hue_spread = 18;
    d.achromatic = 0.55;
    d.saturation = 0.38;
    d.brightness = 0.4;
    d.dark_bias = 0.7;
    d.illumination = 0.88;
    d.gain_spread = 0.14;
    d.cast_spread = 0.06;
    d.noise = 5.0;
    d.blur = 0.35;
    d.occlusion = 0.35;
    d.shorts = 0.04;
    d.short_sleeves = 0.08;
    d.bags = 0.55;
    d.long_hair = 0.35;
    d.patterned = 0.2;
    d.background = BackgroundKind::kGradient;
    d.background_base = {118, 120, 124};
    d.background_spread = 28;
    d.texture = 0.6;
  } else if (name == "msmt") {
    // MSMT17: many indoor and outdoor cameras; strongly varying lighting and
    // colour casts, busy backgrounds (shop fronts), more blur.
    d.hues = {0, 20, 45, 90, 160, 210, 240, 300};
    d.hue_spread = 25;
    d.achromatic = 0.5;
    d.saturation = 0.5;
    d.brightness = 0.52;
    d.dark_bias = 0.5;
    d.illumination = 0.96;
    d.gain_spread = 0.3;
    d.cast_spread = 0.1;
    d.noise = 6.0;
    d.blur = 0.45;
    d.occlusion = 0.3;
    d.shorts = 0.12;
    d.short_sleeves = 0.2;
    d.bags = 0.5;
    d.long_hair = 0.4;
    d.patterned = 0.3;
    d.background = BackgroundKind::kFacade;
    d.background_base = {132, 116, 102};
    d.background_spread = 55;
    d.texture = 0.7;
  }
  return d;
}

Identity sample_identity(const DomainStyle& d, Rng& rng) {
  Identity p;
  p.upper = garment_colour(d, rng);
  p.upper_pattern = draw_pattern(rng, d.patterned);
  p.upper_accent = accent_colour(d, p.upper, rng);
  p.long_sleeves = !rng.bernoulli(d.short_sleeves);
  p.lower = garment_colour(d, rng);
  p.lower_pattern = draw_pattern(rng, d.patterned * 0.35);
  p.lower_accent = accent_colour(d, p.lower, rng);
  p.shorts = rng.bernoulli(d.shorts);
  p.hair = jittered(kHairColours[pick(kHairOdds, rng)], rng, 8.0);
  p.hair_length = rng.bernoulli(d.long_hair) ? rng.uniform(0.6, 1.0) : rng.uniform(0.0, 0.35);
  p.skin = jittered(kSkinTones[rng.below(5)], rng, 7.0);
  if (rng.bernoulli(d.bags)) {
    p.bag = rng.bernoulli(0.6) ? Bag::kBackpack : Bag::kHandbag;
    p.bag_colour = garment_colour(d, rng, /*darker=*/0.3);
  }
  p.bag_on_left = rng.bernoulli(0.5);
  p.body_width = rng.uniform(0.85, 1.2);
  p.body_height = rng.uniform(0.93, 1.05);
  p.stripe_period = rng.uniform(0.03, 0.07);
  const double shoe = rng.uniform();
  if (shoe < 0.55) {  // dark
    const uint8_t level = to_byte(20 + 40 * rng.uniform());
    p.shoes = {level, level, level};
  } else if (shoe < 0.8) {  // white trainers
    p.shoes = {235, 235, 232};
  } else {
    p.shoes = garment_colour(d, rng);
  }
  return p;
}

CameraStyle sample_camera(const DomainStyle& d, Rng& rng) {
  CameraStyle c;
  c.gain = d.illumination * std::exp(normal(rng) * d.gain_spread);
  double mean = 0;
  for (double& g : c.cast) {
    g = std::max(0.6, 1.0 + normal(rng) * d.cast_spread);
    mean += g / 3.0;
  }
  for (double& g : c.cast) g /= mean;
  c.blur_radius = rng.bernoulli(d.blur) ? (rng.bernoulli(0.2) ? 2 : 1) : 0;
  for (double& w : c.view_weights) w = 0.2 + rng.uniform();
  c.view_weights[rng.below(3)] += 1.5;  // each camera mostly sees one side
  c.shear = normal(rng) * 0.06;
  c.noise = d.noise * rng.uniform(0.6, 1.4);
  const double common = normal(rng) * d.background_spread * 0.6;
  for (int i = 0; i < 3; ++i) {
    c.background_top[i] =
        to_byte(d.background_base[i] + common + normal(rng) * d.background_spread * 0.25);
  }
  const double ground = rng.uniform(0.6, 1.1);
  for (int i = 0; i < 3; ++i) {
    c.background_bottom[i] = to_byte(c.background_top[i] * ground + normal(rng) * 15.0);
  }
  c.horizon = rng.uniform(0.45, 0.75);
  c.scene = rng.next();
  return c;
}

Image render_person(const Identity& person, const CameraStyle& camera, const DomainStyle& domain,
                    Rng& rng, int64_t height, int64_t width) {
  if (height < 8 || width < 8) {
    throw std::invalid_argument("render_person: height and width must be at least 8, got " +
                                std::to_string(height) + " × " + std::to_string(width));
  }
  return render(person, camera, domain, rng, height, width, /*distractor=*/false);
}

const char* split_folder(SynthSplit split) {
  switch (split) {
    case SynthSplit::kTrain: return "bounding_box_train";
    case SynthSplit::kQuery: return "query";
    case SynthSplit::kGallery: return "bounding_box_test";
  }
  return "";
}

std::string SynthImage::file_name() const {
  char name[64];
  std::snprintf(name, sizeof(name), "%04lld_c%llds1_%06lld_00.jpg", static_cast<long long>(pid),
                static_cast<long long>(camera), static_cast<long long>(frame));
  return name;
}

std::vector<SynthImage> plan_market_dataset(const SynthOptions& options) {
  options.validate();
  const uint64_t domain_hash = fnv1a(options.domain);
  const int64_t train_ids = (options.ids + 1) / 2;
  const int64_t per_camera = options.images_per_camera;
  std::vector<SynthImage> plan;
  std::vector<SynthImage> test;  // query and gallery, in id order, after train
  int64_t gallery_real = 0;
  for (int64_t id = 0; id < options.ids; ++id) {
    Rng rng(options.seed, {kPlanStream, domain_hash, static_cast<uint64_t>(id)});
    std::vector<int64_t> cameras(static_cast<size_t>(options.cameras));
    for (int64_t c = 0; c < options.cameras; ++c) cameras[static_cast<size_t>(c)] = c + 1;
    for (size_t i = cameras.size() - 1; i > 0; --i) {  // Fisher-Yates
      std::swap(cameras[i], cameras[static_cast<size_t>(rng.below(i + 1))]);
    }
    const int64_t seen = rng.integer(options.min_cameras_per_id, options.cameras);
    cameras.resize(static_cast<size_t>(seen));
    const bool is_test = id >= train_ids;
    // A query needs a gallery image of its id in another camera: with one
    // image per camera, at least one camera keeps its image in the gallery.
    const int64_t query_cameras =
        std::min(options.query_cameras_per_id, per_camera >= 2 ? seen : seen - 1);
    for (size_t k = 0; k < cameras.size(); ++k) {
      const bool has_query = is_test && static_cast<int64_t>(k) < query_cameras;
      const int64_t query_at = has_query ? rng.integer(0, per_camera - 1) : -1;
      int64_t frame = rng.integer(0, kMaxFrame - 1 - kFrameStepMax * per_camera);
      for (int64_t j = 0; j < per_camera; ++j) {
        frame += rng.integer(1, kFrameStepMax);
        SynthImage image;
        image.pid = id + 1;
        image.camera = cameras[k];
        image.frame = frame;
        image.identity = id;
        if (!is_test) {
          image.split = SynthSplit::kTrain;
          plan.push_back(image);
        } else {
          image.split = j == query_at ? SynthSplit::kQuery : SynthSplit::kGallery;
          gallery_real += image.split == SynthSplit::kGallery;
          test.push_back(image);
        }
      }
    }
  }
  plan.insert(plan.end(), test.begin(), test.end());
  const auto distractors = static_cast<int64_t>(
      std::llround(options.distractor_fraction * static_cast<double>(gallery_real)));
  if (distractors * kDistractorFrameSlot > kMaxFrame) {
    throw std::invalid_argument("SynthOptions.distractor_fraction gives " +
                                std::to_string(distractors) + " distractors, more than the " +
                                std::to_string(kMaxFrame / kDistractorFrameSlot) +
                                " six-digit frame numbers allow");
  }
  for (int64_t k = 0; k < distractors; ++k) {
    Rng rng(options.seed, {kDistractorStream, domain_hash, static_cast<uint64_t>(k)});
    SynthImage image;
    image.split = SynthSplit::kGallery;
    image.pid = 0;
    image.camera = rng.integer(1, options.cameras);
    image.frame = k * kDistractorFrameSlot + rng.integer(0, kDistractorFrameSlot - 1);
    image.identity = options.ids + k;
    plan.push_back(image);
  }
  for (size_t i = 0; i < plan.size(); ++i) plan[i].index = static_cast<int64_t>(i);
  return plan;
}

Image render_synth_image(const SynthOptions& options, const SynthImage& image) {
  options.validate();
  check_range(image.camera, 1, options.cameras, "cameras (of the image)");
  return render_planned(options, make_scene(options), image);
}

SynthSummary render_market_dataset(const std::string& out_dir, const SynthOptions& options,
                                   const SynthProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<SynthImage> plan = plan_market_dataset(options);
  const Scene scene = make_scene(options);
  const fs::path root(out_dir);
  fs::create_directories(root);
  prepare_folders(root, plan);
  write_marker(root, options, "");

  SynthSummary summary;
  summary.train_ids = (options.ids + 1) / 2;
  summary.test_ids = options.ids - summary.train_ids;
  summary.cameras = options.cameras;
  for (const SynthImage& image : plan) {
    switch (image.split) {
      case SynthSplit::kTrain: ++summary.train_images; break;
      case SynthSplit::kQuery: ++summary.query_images; break;
      case SynthSplit::kGallery:
        ++summary.gallery_images;
        summary.distractor_images += image.pid == 0;
        break;
    }
  }
  const auto total = static_cast<int64_t>(plan.size());
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, (total + 63) / 64)));
  summary.threads = threads;

  std::atomic<int64_t> next{0}, done{0}, bytes{0}, unchanged{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards error and serialises progress calls
  std::exception_ptr error;
  constexpr int64_t kChunk = 16;
  auto work = [&] {
    try {
      while (!failed.load(std::memory_order_relaxed)) {
        const int64_t begin = next.fetch_add(kChunk);
        if (begin >= total) break;
        const int64_t end = std::min(total, begin + kChunk);
        for (int64_t i = begin; i < end; ++i) {
          const SynthImage& planned = plan[static_cast<size_t>(i)];
          const std::vector<uint8_t> jpeg =
              encode_jpeg(render_planned(options, scene, planned), options.jpeg_quality);
          const fs::path path = root / split_folder(planned.split) / planned.file_name();
          if (holds(path, jpeg)) {
            ++unchanged;
          } else {
            write_file_bytes(path.string(), jpeg);
          }
          bytes += static_cast<int64_t>(jpeg.size());
        }
        const int64_t now = done += end - begin;
        if (progress && now < total) {
          std::lock_guard<std::mutex> lock(mutex);
          progress(now, total);
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (error) std::rethrow_exception(error);
  if (progress) progress(total, total);

  summary.bytes = bytes.load();
  summary.unchanged = unchanged.load();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ostringstream counts;
  counts << "train_images=" << summary.train_images << "\nquery_images=" << summary.query_images
         << "\ngallery_images=" << summary.gallery_images
         << "\ndistractor_images=" << summary.distractor_images << "\n";
  write_marker(root, options, counts.str());
  return summary;
}

}  // namespace tandem::worker
