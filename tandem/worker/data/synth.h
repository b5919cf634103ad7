// Synthetic pedestrian domains: procedurally rendered people in a
// Market-1501 layout, for the demo, the tests and the adaptation benchmarks
// (real re-ID data sets cannot be downloaded everywhere).
//
// Three levels of randomness, each seeded on its own so that nothing depends
// on rendering order or thread count:
//   - a domain (DomainStyle, from the domain name alone): palette, saturation,
//     brightness, background kind, noise, blur, occlusion;
//   - its cameras (CameraStyle, from the domain name and the camera index):
//     illumination gain, colour cast, blur, viewpoints, shear, scene colours;
//   - identities (Identity, from the seed, the domain and the identity index):
//     clothes, hair, skin, bag, build; and each image (from the seed, the
//     domain and the image's index): pose, viewpoint, framing, occlusion.
// See docs/synthetic_data.md.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tandem/worker/data/image.h"
#include "tandem/worker/data/random.h"

namespace tandem::worker {

/// What `tandem synth` and render_market_dataset draw.
struct SynthOptions {
  /// Domain name; "market", "duke" and "msmt" are presets, any other
  /// non-empty name gets a style derived from a hash of the name.
  std::string domain = "market";
  /// Identities in all, in [2, 9999]: the first ceil(ids / 2) train, the rest test.
  int64_t ids = 100;
  /// Cameras of the network, in [2, 9] (one digit in the file names).
  int64_t cameras = 6;
  /// Seeds identities, their camera subsets and every image.
  uint64_t seed = 1;
  /// Image height in pixels, in [32, 1024].
  int64_t height = 128;
  /// Image width in pixels, in [16, 1024].
  int64_t width = 64;
  /// Images of an identity in each camera it appears in, in [1, 1000].
  int64_t images_per_camera = 4;
  /// Fewest cameras an identity appears in, in [2, cameras]; each identity
  /// appears in a uniform number of cameras between this and `cameras`.
  int64_t min_cameras_per_id = 2;
  /// Most cameras a test identity has a query image in, in [1, cameras].
  int64_t query_cameras_per_id = 2;
  /// JPEG quality, in [1, 100].
  int jpeg_quality = 90;
  /// Distractors (pid 0000, people seen nowhere else, often badly framed)
  /// added to the gallery, as a fraction of its real images, in [0, 1].
  double distractor_fraction = 0.05;
  /// Rendering threads; 0 uses every hardware thread. Output never depends on it.
  int threads = 0;

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const;
};

/// An RGB colour.
using Rgb = std::array<uint8_t, 3>;

/// How a garment is coloured.
enum class Pattern { kSolid, kStripes, kChecks };
/// What a person carries.
enum class Bag { kNone, kBackpack, kHandbag };
/// Which side of the person a camera sees.
enum class Viewpoint { kFront, kBack, kSide };

/// The attributes that make one person recognisable in every image.
struct Identity {
  Rgb upper{};         ///< Shirt or coat.
  Rgb upper_accent{};  ///< Second colour of its stripes or checks.
  Pattern upper_pattern = Pattern::kSolid;
  bool long_sleeves = true;
  Rgb lower{};  ///< Trousers, shorts or skirt.
  Rgb lower_accent{};
  Pattern lower_pattern = Pattern::kSolid;
  bool shorts = false;  ///< Bare shins below the knee.
  Rgb hair{};
  double hair_length = 0.2;  ///< 0 short .. 1 shoulder-long.
  Rgb skin{};
  Bag bag = Bag::kNone;
  Rgb bag_colour{};
  bool bag_on_left = false;     ///< Side a handbag hangs on.
  double body_width = 1.0;      ///< Build, about 0.85 .. 1.2.
  double body_height = 1.0;     ///< Stature, about 0.93 .. 1.05 (fills more of the box).
  double stripe_period = 0.05;  ///< Stripe or check size, in body heights.
  Rgb shoes{};
};

/// How one camera of a domain sees: its optics, lighting and scene.
struct CameraStyle {
  double gain = 1.0;                            ///< Illumination (multiplies every channel).
  std::array<double, 3> cast{1, 1, 1};          ///< Per-channel colour gains (mean 1).
  int blur_radius = 0;                          ///< Box blur radius in pixels (0 = sharp).
  std::array<double, 3> view_weights{1, 1, 1};  ///< Odds of front, back, side views.
  double shear = 0.0;       ///< Horizontal shear (camera tilt), x += shear · y.
  double noise = 4.0;       ///< Sensor noise amplitude, grey levels.
  Rgb background_top{};     ///< The scene: gradient from top ...
  Rgb background_bottom{};  ///< ... to bottom (ground).
  uint64_t scene = 0;       ///< Seeds the scene's layout (windows, paving).
  double horizon = 0.6;     ///< Height of the wall/ground line, as a fraction.
};

/// Background kinds a domain renders.
enum class BackgroundKind { kGradient, kGround, kFacade };

/// The style distribution of a domain, from which identities and cameras are drawn.
struct DomainStyle {
  std::string name;
  uint64_t hash = 0;           ///< FNV-1a of the name; seeds cameras and identities.
  std::vector<double> hues;    ///< Preferred clothing hues, degrees.
  double hue_spread = 25.0;    ///< Jitter around a preferred hue, degrees.
  double achromatic = 0.3;     ///< Fraction of black/grey/white garments.
  double saturation = 0.6;     ///< Mean garment saturation, [0, 1].
  double brightness = 0.6;     ///< Mean garment value (HSV), [0, 1].
  double dark_bias = 0.0;      ///< Pushes achromatic garments towards black, [0, 1].
  double illumination = 1.0;   ///< Mean camera gain.
  double gain_spread = 0.15;   ///< Log-normal spread of camera gains.
  double cast_spread = 0.06;   ///< Spread of per-channel camera gains.
  double noise = 4.0;          ///< Mean sensor noise, grey levels.
  double blur = 0.3;           ///< Probability a camera blurs (radius 1, or 2 rarely).
  double occlusion = 0.25;     ///< Probability an image is partly occluded.
  double shorts = 0.3;         ///< Probability of shorts or skirt.
  double short_sleeves = 0.4;  ///< Probability of short sleeves.
  double bags = 0.5;           ///< Probability of carrying a bag.
  double long_hair = 0.35;     ///< Probability of long hair.
  double patterned = 0.3;      ///< Probability a garment has stripes or checks.
  BackgroundKind background = BackgroundKind::kGround;
  Rgb background_base{};            ///< Typical scene colour.
  double background_spread = 40.0;  ///< Spread of scene colours across cameras.
  double texture = 0.5;             ///< Background texture contrast, [0, 1].
};

/// The style of the domain called `name` (a preset, or derived from its hash).
DomainStyle domain_style(const std::string& name);

/// Draws one person from the domain's distribution.
Identity sample_identity(const DomainStyle& domain, Rng& rng);

/// Draws one camera of the domain.
CameraStyle sample_camera(const DomainStyle& domain, Rng& rng);

/// Renders one image of `person` seen by `camera`: pose, viewpoint, scale,
/// framing, occlusion and noise come from `rng`. `height` × `width` RGB.
Image render_person(const Identity& person, const CameraStyle& camera, const DomainStyle& domain,
                    Rng& rng, int64_t height, int64_t width);

/// The Market-1501 folders.
enum class SynthSplit { kTrain, kQuery, kGallery };

/// "bounding_box_train", "query" or "bounding_box_test".
const char* split_folder(SynthSplit split);

/// One image of a planned data set.
struct SynthImage {
  SynthSplit split = SynthSplit::kTrain;
  int64_t pid = 0;       ///< 1..ids, or 0 for a distractor.
  int64_t camera = 1;    ///< 1-based.
  int64_t frame = 0;     ///< < 1,000,000.
  int64_t identity = 0;  ///< Seeds the person: pid - 1, or ids + k for distractor k.
  int64_t index = 0;     ///< Position in the plan; seeds the image.
  /// "PPPP_cCs1_FFFFFF_00.jpg".
  std::string file_name() const;
};

/// Every image of the data set the options describe, train then test
/// (query and gallery) then distractors. Validates the options.
std::vector<SynthImage> plan_market_dataset(const SynthOptions& options);

/// Renders one planned image (what render_market_dataset encodes and writes).
Image render_synth_image(const SynthOptions& options, const SynthImage& image);

/// What render_market_dataset wrote.
struct SynthSummary {
  int64_t train_ids = 0;
  int64_t test_ids = 0;
  int64_t cameras = 0;
  int64_t train_images = 0;
  int64_t query_images = 0;
  int64_t gallery_images = 0;  ///< Including the distractors.
  int64_t distractor_images = 0;
  int64_t bytes = 0;      ///< JPEG bytes of the data set.
  int64_t unchanged = 0;  ///< Images already there with the same bytes (not rewritten).
  int threads = 0;
  double seconds = 0.0;
  int64_t images() const { return train_images + query_images + gallery_images; }
};

/// Called now and then with the images done and the total (from a rendering
/// thread, never two at once).
using SynthProgress = std::function<void(int64_t done, int64_t total)>;

/// Renders the data set into `out_dir` in the Market-1501 layout
/// (bounding_box_train/, query/, bounding_box_test/) and writes
/// `out_dir/tandem_synth.txt` recording the options. The same options give
/// byte-identical files. Re-rendering into a folder made by this function
/// deletes the .jpg files the new plan lacks and leaves files that already
/// hold the right bytes untouched; a folder whose split folders hold files
/// but no tandem_synth.txt is refused (std::runtime_error), so a real data
/// set is never overwritten.
SynthSummary render_market_dataset(const std::string& out_dir, const SynthOptions& options,
                                   const SynthProgress& progress = {});

}  // namespace tandem::worker
