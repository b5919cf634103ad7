#include "tandem/methods/serialization.h"

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/python.h"

namespace tandem::methods {
namespace {

namespace fs = std::filesystem;
using c10::IValue;
using namespace std::string_literals;

// ---------------------------------------------------------------------------
// Helpers.

std::string fixture(const std::string& name) {
  return std::string(TANDEM_SOURCE_DIR) + "/tests/golden/serialization/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

/// dict[key]; a test failure (and None) when the key is missing.
IValue at(const IValue& dict, const IValue& key) {
  EXPECT_TRUE(dict.isGenericDict()) << "not a dict: " << dict.tagKind();
  if (!dict.isGenericDict()) {
    return {};
  }
  const auto d = dict.toGenericDict();
  const auto found = d.find(key);
  EXPECT_TRUE(found != d.end()) << "no key " << key;
  return found == d.end() ? IValue() : found->value();
}
IValue at(const IValue& dict, const char* key) {
  return at(dict, IValue(std::string(key)));
}

std::vector<std::string> string_keys(const IValue& dict) {
  std::vector<std::string> out;
  for (const auto& entry : dict.toGenericDict()) {
    out.push_back(entry.key().toStringRef());
  }
  return out;
}

/// The message of the c10::Error that `f` throws; a test failure when it
/// throws nothing or something else.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected c10::Error, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected c10::Error, nothing was thrown";
  return {};
}

#define EXPECT_ERROR_HAS(statement, text)                          \
  do {                                                             \
    const std::string message_ = error_of([&] { statement; });     \
    EXPECT_NE(message_.find(text), std::string::npos) << message_; \
  } while (false)

/// A fresh folder, removed with its content at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "tandem_serialization_XXXXXX";
    const char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The fixtures' nn.Module (tests/golden/generate_serialization_fixtures.py):
// entry i of its state dict holds arange(numel) * 0.25 + i, and
// bn.num_batches_tracked is 7 (int64, 0-dim).
struct NetEntry {
  const char* key;
  std::vector<int64_t> shape;
  bool parameter;
};
const std::vector<NetEntry> net_entries = {
    {"conv.weight", {2, 1, 2, 2}, true},
    {"bn.weight", {2}, true},
    {"bn.bias", {2}, true},
    {"bn.running_mean", {2}, false},
    {"bn.running_var", {2}, false},
    {"bn.num_batches_tracked", {}, false},
    {"fc.weight", {3, 2}, true},
    {"fc.bias", {3}, true},
};

torch::Tensor net_value(size_t i) {
  if (std::string(net_entries[i].key) == "bn.num_batches_tracked") {
    return torch::tensor(7, torch::kInt64);
  }
  const int64_t numel = c10::multiply_integers(net_entries[i].shape);
  return torch::arange(numel, torch::kFloat32).view(net_entries[i].shape) * 0.25 +
         static_cast<double>(i);
}

/// Checks `keys`/`values` (in order) against net_entries.
void expect_net(const std::vector<std::string>& keys, const std::vector<torch::Tensor>& values,
                const std::string& prefix = "") {
  ASSERT_EQ(keys.size(), net_entries.size());
  for (size_t i = 0; i < net_entries.size(); ++i) {
    SCOPED_TRACE(net_entries[i].key);
    EXPECT_EQ(keys[i], prefix + net_entries[i].key);
    const auto expected = net_value(i);
    EXPECT_EQ(values[i].scalar_type(), expected.scalar_type());
    EXPECT_EQ(values[i].sizes(), expected.sizes());
    EXPECT_TRUE(torch::equal(values[i], expected)) << values[i];
  }
}

void expect_net_dict(const IValue& dict, const std::string& prefix = "") {
  ASSERT_TRUE(dict.isGenericDict()) << dict.tagKind();
  std::vector<torch::Tensor> values;
  for (const auto& entry : dict.toGenericDict()) {
    ASSERT_TRUE(entry.value().isTensor()) << entry.key();
    values.push_back(entry.value().toTensor());
  }
  expect_net(string_keys(dict), values, prefix);
}

void expect_net_state(const StateDict& state) {
  std::vector<std::string> keys = state.keys();
  std::vector<torch::Tensor> values = state.values();
  expect_net(keys, values);
  for (const auto& value : values) {
    EXPECT_FALSE(value.requires_grad());
  }
}

// ---------------------------------------------------------------------------
// The committed fixtures, each in the zip and the legacy format.

constexpr const char* kFormats[] = {"zip", "legacy"};

TEST(TorchFileFixture, StateDictIsAnOrderedDictInFileOrder) {
  for (const std::string format : kFormats) {
    SCOPED_TRACE(format);
    const IValue loaded = load_torch_file(fixture("state_dict." + format + ".pt"));
    expect_net_dict(loaded);
    const auto nbt = at(loaded, "bn.num_batches_tracked").toTensor();
    EXPECT_EQ(nbt.dim(), 0);
    EXPECT_EQ(nbt.item<int64_t>(), 7);
    for (const auto& entry : loaded.toGenericDict()) {
      EXPECT_FALSE(entry.value().toTensor().requires_grad());
    }
  }
}

TEST(TorchFileFixture, KeepVarsParametersRequireGrad) {
  for (const std::string format : kFormats) {
    SCOPED_TRACE(format);
    const IValue loaded = load_torch_file(fixture("state_dict_keep_vars." + format + ".pt"));
    expect_net_dict(loaded);
    for (const auto& entry : net_entries) {
      EXPECT_EQ(at(loaded, entry.key).toTensor().requires_grad(), entry.parameter) << entry.key;
    }
  }
}

TEST(TorchFileFixture, CheckpointWithDataParallelKeys) {
  for (const std::string format : kFormats) {
    SCOPED_TRACE(format);
    const std::string path = fixture("checkpoint." + format + ".pt");
    const IValue loaded = load_torch_file(path);
    EXPECT_EQ(string_keys(loaded), (std::vector<std::string>{"state_dict", "epoch", "best_mAP"}));
    EXPECT_EQ(at(loaded, "epoch").toInt(), 3);
    EXPECT_TRUE(at(loaded, "best_mAP").isNone());  // numpy.float64 loads as None
    expect_net_dict(at(loaded, "state_dict"), "module.");
    expect_net_state(load_state_dict(path));
  }
}

TEST(TorchFileFixture, LoadStateDictOfAPlainStateDict) {
  for (const std::string format : kFormats) {
    SCOPED_TRACE(format);
    expect_net_state(load_state_dict(fixture("state_dict." + format + ".pt")));
    // keep_vars=True: the Parameters come back detached.
    expect_net_state(load_state_dict(fixture("state_dict_keep_vars." + format + ".pt")));
  }
}

TEST(TorchFileFixture, SharedStorageViews) {
  for (const std::string format : {"zip", "legacy", "p4.zip"}) {
    SCOPED_TRACE(format);
    // {'a': t[2:5], 'b': t, 'c': t.view(2, 5).t()} with t = torch.arange(10.)
    const IValue loaded = load_torch_file(fixture("shared." + format + ".pt"));
    const auto a = at(loaded, "a").toTensor();
    const auto b = at(loaded, "b").toTensor();
    const auto c = at(loaded, "c").toTensor();
    const auto t = torch::arange(10, torch::kFloat32);
    EXPECT_TRUE(torch::equal(a, t.slice(0, 2, 5)));
    EXPECT_TRUE(torch::equal(b, t));
    EXPECT_TRUE(torch::equal(c, t.view({2, 5}).t()));
    EXPECT_EQ(a.storage_offset(), 2);
    EXPECT_EQ(c.strides(), (std::vector<int64_t>{1, 5}));
    EXPECT_TRUE(a.is_alias_of(b));
    EXPECT_TRUE(c.is_alias_of(b));
    b[3] = 100.0f;  // element 3 is a[1] and c[3][0]
    EXPECT_EQ(a[1].item<float>(), 100.0f);
    EXPECT_EQ(c[3][0].item<float>(), 100.0f);
  }
}

TEST(TorchFileFixture, Dtypes) {
  for (const std::string format : kFormats) {
    SCOPED_TRACE(format);
    const IValue d = load_torch_file(fixture("dtypes." + format + ".pt"));
    auto check = [&](const char* key, torch::ScalarType dtype, const torch::Tensor& expected) {
      SCOPED_TRACE(key);
      const auto value = at(d, key).toTensor();
      EXPECT_EQ(value.scalar_type(), dtype);
      EXPECT_EQ(value.sizes(), expected.sizes());
      EXPECT_TRUE(torch::equal(value.to(expected.scalar_type()), expected)) << value;
    };
    check("float16", torch::kHalf, torch::tensor({1.5f, -2.0f, 65504.0f}));
    check("bfloat16", torch::kBFloat16, torch::tensor({0.5f, -3.0f, 256.0f}));
    check("int64", torch::kInt64,
          torch::tensor({-(int64_t{1} << 40), int64_t{0}, int64_t{1} << 62}));
    check("int32", torch::kInt32,
          torch::tensor({-7, 0, 5, std::numeric_limits<int32_t>::max()}).view({2, 2}));
    check("int16", torch::kInt16, torch::tensor({-300, 300}).to(torch::kInt16));
    check("int8", torch::kInt8, torch::tensor({-128, 127}).to(torch::kInt8));
    check("bool", torch::kBool, torch::tensor({true, false, true}));
    check("uint8", torch::kUInt8, torch::tensor({0, 128, 255}).to(torch::kUInt8));
    check("float64", torch::kFloat64, torch::tensor({0.1, -1e300}, torch::kFloat64));
    check("complex64", torch::kComplexFloat, torch::tensor({c10::complex<float>(1.0f, 2.0f)}));
    check("scalar", torch::kFloat32, torch::tensor(3.25f));
    check("scalar_int", torch::kInt64, torch::tensor(int64_t{-4}));
    check("empty", torch::kFloat32, torch::zeros({0, 3}));
    check("empty_long", torch::kInt64, torch::zeros({0}, torch::kInt64));
  }
}

TEST(TorchFileFixture, PythonValues) {
  for (const std::string format : {"zip", "legacy", "p4.zip"}) {
    SCOPED_TRACE(format);
    const IValue d = load_torch_file(fixture("misc." + format + ".pt"));
    // A one-item dict (SETITEM).
    const IValue one = at(d, "one");
    EXPECT_EQ(one.toGenericDict().size(), 1u);
    EXPECT_EQ(at(one, "only").toInt(), 1);
    // [1, -2, 2.5, None, True, False, 'text', [], [7]]
    const auto list = at(d, "list").toList().vec();
    ASSERT_EQ(list.size(), 9u);
    EXPECT_EQ(list[0].toInt(), 1);
    EXPECT_EQ(list[1].toInt(), -2);
    EXPECT_EQ(list[2].toDouble(), 2.5);
    EXPECT_TRUE(list[3].isNone());
    EXPECT_TRUE(list[4].toBool());
    EXPECT_FALSE(list[5].toBool());
    EXPECT_EQ(list[6].toStringRef(), "text");
    EXPECT_EQ(list[7].toList().size(), 0u);
    ASSERT_EQ(list[8].toList().size(), 1u);  // APPEND
    EXPECT_EQ(list[8].toList().get(0).toInt(), 7);
    // (1, ('a', None), [])
    const auto& tuple = at(d, "tuple").toTupleRef().elements();
    ASSERT_EQ(tuple.size(), 3u);
    EXPECT_EQ(tuple[0].toInt(), 1);
    ASSERT_EQ(tuple[1].toTupleRef().elements().size(), 2u);
    EXPECT_EQ(tuple[1].toTupleRef().elements()[0].toStringRef(), "a");
    EXPECT_TRUE(tuple[1].toTupleRef().elements()[1].isNone());
    EXPECT_TRUE(tuple[2].isList());
    EXPECT_EQ(at(d, "empty_tuple").toTupleRef().elements().size(), 0u);
    // Integers of every pickle width.
    // clang-format off
    const std::vector<int64_t> ints = {255, 256, 65535, 65536, -1, 2147483647, -2147483648LL,
                                       2147483648LL, int64_t{1} << 62,
                                       std::numeric_limits<int64_t>::min()};
    // clang-format on
    std::vector<int64_t> loaded_ints;
    for (const auto& value : at(d, "ints").toList().vec()) {
      loaded_ints.push_back(value.toInt());
    }
    EXPECT_EQ(loaded_ints, ints);
    EXPECT_EQ(at(d, "float").toDouble(), -0.125);
    EXPECT_EQ(at(d, "unicode").toStringRef(), "h\xc3\xa9llo \xe2\x9c\x93");
    EXPECT_EQ(at(d, "bytes").toStringRef(), std::string("\x00\xff"
                                                        "ab",
                                                        4));
    // One Python list referenced twice stays one list.
    EXPECT_TRUE(at(d, "alias_a").is(at(d, "alias_b")));
    EXPECT_EQ(at(at(d, "int_keys"), IValue(int64_t{2})).toStringRef(), "two");
    EXPECT_TRUE(at(d, "namespace").isNone());  // argparse.Namespace
    const auto nested = at(at(at(d, "nested"), "x"), "y").toList();
    ASSERT_EQ(nested.size(), 1u);
    EXPECT_TRUE(torch::equal(nested.get(0).toTensor(), torch::tensor({1.5f, 2.5f})));
    EXPECT_EQ(string_keys(at(d, "ordered")), (std::vector<std::string>{"z", "a"}));
  }
}

// ---------------------------------------------------------------------------
// Hand-written legacy streams: opcodes Python 3's pickler never emits
// (Python 2 str, text INT/LONG, storage views) and precise errors.

constexpr char kMagicPickle[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

std::string u32(uint32_t v) {
  return {reinterpret_cast<const char*>(&v), 4};
}
std::string u64(uint64_t v) {
  return {reinterpret_cast<const char*>(&v), 8};
}
/// SHORT_BINSTRING, Python 2's str.
std::string py2_str(const std::string& s) {
  return "U" + std::string(1, char(s.size())) + s;
}

/// A legacy torch.save stream around `object_pickle`.
std::string legacy_stream(const std::string& object_pickle,
                          const std::string& keys_pickle = "\x80\x02]q\x00."s,
                          const std::string& data = "") {
  return std::string(kMagicPickle, sizeof(kMagicPickle) - 1) + "\x80\x02M\xe9\x03." + "\x80\x02}." +
         object_pickle + keys_pickle + data;
}
/// PROTO 2, which starts every pickle torch.save writes.
const std::string protocol2 = "\x80\x02";
/// Offset of the object pickle in a legacy_stream.
constexpr size_t kObjectOffset = sizeof(kMagicPickle) - 1 + 6 + 4;

std::string floats(std::initializer_list<float> values) {
  std::string out = u64(values.size());
  for (float v : values) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  return out;
}

TEST(TorchFileBytes, Python2OrderedDictWithStorageView) {
  // OrderedDict([['w', _rebuild_tensor(root, 0, (2, 2), (2, 1))],
  //              ['v', _rebuild_tensor(view, 1, (2,), (1,))]]) as Python 2
  // pickles it, where view is elements 1..3 of the 4-float storage root.
  const std::string root_pid = "(" + py2_str("storage") + "ctorch\nFloatStorage\n" +
                               py2_str("root") + py2_str("cpu") + "K\x04Nt";
  const std::string view_pid = "(" + py2_str("storage") + "ctorch.cuda\nFloatStorage\n" +
                               py2_str("root") + py2_str("cuda:0") + "K\x04(" + py2_str("v") +
                               "K\x01K\x03tt";
  const std::string rebuild = "ctorch._utils\n_rebuild_tensor\n";
  const std::string w = rebuild + "(" + root_pid + "QK\x00K\x02K\x02\x86K\x02K\x01\x86tR"s;
  const std::string v = rebuild + "(" + view_pid + "QK\x01K\x02\x85K\x01\x85tR";
  const std::string object = protocol2 + "ccollections\nOrderedDict\n]q\x01(](" + py2_str("w") + w +
                             "e](" + py2_str("v") + v + "ee\x85R.";
  const std::string keys = "\x80\x02](" + py2_str("root") + "e.";
  const IValue loaded =
      load_torch_bytes(legacy_stream(object, keys, floats({1, 2, 3, 4})), "python2");
  EXPECT_EQ(string_keys(loaded), (std::vector<std::string>{"w", "v"}));
  const auto wt = at(loaded, "w").toTensor();
  const auto vt = at(loaded, "v").toTensor();
  EXPECT_TRUE(torch::equal(wt, torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({2, 2})));
  EXPECT_TRUE(torch::equal(vt, torch::tensor({3.0f, 4.0f})));
  EXPECT_TRUE(vt.is_alias_of(wt));
}

TEST(TorchFileBytes, RarerOpcodes) {
  double one_and_half = 1.5;
  std::string big_endian(8, '\0');
  for (int i = 0; i < 8; ++i) {
    big_endian[7 - i] = reinterpret_cast<const char*>(&one_and_half)[i];
  }
  std::string object = "\x80\x02";
  object += "(K\x01K\x02";                        // MARK 1 2
  object += "1";                                  // POP_MARK drops them
  object += "(0";                                 // POP right after MARK drops the mark
  object += "(";                                  // the MARK of the final LIST
  object += "I42\nL-7L\nI01\nI00\n";              // text INT and LONG, protocol 0 bools
  object += "N2";                                 // None, DUP
  object += "0";                                  // POP
  object += "G" + big_endian;                     // BINFLOAT 1.5
  object += "T\x04\x00\x00\x00"s + "abcd";        // BINSTRING (Python 2 str)
  object += "C\x02xy";                            // SHORT_BINBYTES
  object += "\x8d" + u64(2) + "hi";               // BINUNICODE8
  object += "\x8e" + u64(1) + "z";                // BINBYTES8
  object += "\x8b" + u32(2) + "\x00\x01"s;        // LONG4 256
  object += "\x8a\x09" + std::string(9, '\xff');  // LONG1 -1 in 9 bytes
  object += "\x8a\x00"s;                          // LONG1 0
  object += "(" + py2_str("k") + "K\x05";         // MARK 'k' 5
  object += "d";                                  // DICT {'k': 5}
  object += "r" + u32(70000) + "j" + u32(70000);  // LONG_BINPUT, LONG_BINGET
  object += "l.";                                 // LIST
  const auto list = load_torch_bytes(legacy_stream(object)).toList().vec();
  ASSERT_EQ(list.size(), 15u);
  EXPECT_EQ(list[0].toInt(), 42);
  EXPECT_EQ(list[1].toInt(), -7);
  EXPECT_TRUE(list[2].toBool());
  EXPECT_FALSE(list[3].toBool());
  EXPECT_TRUE(list[4].isNone());
  EXPECT_EQ(list[5].toDouble(), 1.5);
  EXPECT_EQ(list[6].toStringRef(), "abcd");
  EXPECT_EQ(list[7].toStringRef(), "xy");
  EXPECT_EQ(list[8].toStringRef(), "hi");
  EXPECT_EQ(list[9].toStringRef(), "z");
  EXPECT_EQ(list[10].toInt(), 256);
  EXPECT_EQ(list[11].toInt(), -1);
  EXPECT_EQ(list[12].toInt(), 0);
  EXPECT_EQ(at(list[13], "k").toInt(), 5);
  EXPECT_TRUE(list[14].is(list[13]));
}

TEST(TorchFileBytes, ErrorsNameTheOpcodeAndOffset) {
  // PUT (text memo, protocol 0) is not supported.
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02Np0\n."), "hand"),
                   "unsupported pickle opcode 0x70 ('p') (pickle opcode at offset " +
                       std::to_string(kObjectOffset + 3) + ")");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02\xa0."), "hand"),
                   "unsupported pickle opcode 0xa0");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream(protocol2 + "a."), "hand"), "stack underflow");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02h\x05."), "hand"),
                   "memo entry 5 is not defined");
  EXPECT_ERROR_HAS(
      load_torch_bytes(legacy_stream("\x80\x02\x8a\x09" + std::string(8, '\0') + "\x01."), "hand"),
      "does not fit in int64");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02X\xff\xff\x00\x00"s + "ab."), "hand"),
                   "truncated data: BINUNICODE needs 65535 bytes");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02N"), "hand"), "truncated data");
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream("\x80\x02]K\x01K\x02s."), "hand"),
                   "SETITEM on a GenericList, not a dict");
  EXPECT_ERROR_HAS(
      load_torch_bytes(legacy_stream(protocol2 + "ctorch._utils\n_rebuild_qtensor\n)R."), "hand"),
      "unsupported tensor kind torch._utils._rebuild_qtensor");
  EXPECT_ERROR_HAS(
      load_torch_bytes(legacy_stream("\x80\x02(" + py2_str("storage") + "tQ."), "hand"),
      "persistent id must be ('storage', type, key, location, numel, view_metadata)");
}

TEST(TorchFileBytes, TensorOutsideItsStorageIsAnError) {
  auto tensor_pickle = [](const std::string& size) {
    return protocol2 + "ctorch._utils\n_rebuild_tensor_v2\n((" + py2_str("storage") +
           "ctorch\nFloatStorage\n" + py2_str("0") + py2_str("cpu") + "K\x04NtQK\x00"s + size +
           "K\x01\x85\x89}tR.";
  };
  const std::string keys = "\x80\x02](" + py2_str("0") + "e.";
  EXPECT_TRUE(torch::equal(
      load_torch_bytes(legacy_stream(tensor_pickle("K\x04\x85"), keys, floats({1, 2, 3, 4})))
          .toTensor(),
      torch::tensor({1.0f, 2.0f, 3.0f, 4.0f})));
  EXPECT_ERROR_HAS(
      load_torch_bytes(legacy_stream(tensor_pickle("K\x05\x85"), keys, floats({1, 2, 3, 4}))),
      "reaches element 4 of a storage of 4 elements");
  // The raw data disagrees with the persistent id on the element count.
  EXPECT_ERROR_HAS(
      load_torch_bytes(legacy_stream(tensor_pickle("K\x04\x85"), keys, floats({1, 2, 3}))),
      "has 3 elements, its tensors expect 4");
  // The storage is never written.
  EXPECT_ERROR_HAS(load_torch_bytes(legacy_stream(tensor_pickle("K\x04\x85"))),
                   "missing from the storage key list");
}

// ---------------------------------------------------------------------------
// Bad files.

TEST(TorchFileErrors, MissingFileNamesThePath) {
  const std::string path = "/nonexistent-tandem-folder/weights.pth";
  EXPECT_ERROR_HAS(load_torch_file(path), "load_torch_file: '" + path + "': cannot open");
  EXPECT_ERROR_HAS(load_state_dict(path), path);
}

TEST(TorchFileErrors, EmptyFileAndFolder) {
  TempDir dir;
  write_file(dir.file("empty.pt"), "");
  EXPECT_ERROR_HAS(load_torch_file(dir.file("empty.pt")), "empty file");
  EXPECT_ERROR_HAS(load_torch_file(dir.path().string()), "is a folder");
}

TEST(TorchFileErrors, RandomBytes) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const std::string head : {"", "PK\x03\x04", "\x80\x02"}) {
    std::string bytes = head;
    while (bytes.size() < 4096) {
      bytes.push_back(static_cast<char>(byte(rng)));
    }
    if (head.empty()) {
      bytes[0] = 'x';
    }
    EXPECT_ERROR_HAS(load_torch_bytes(bytes, "noise"), "load_torch_bytes: noise: ");
  }
  EXPECT_ERROR_HAS(load_torch_bytes("hello", "text"), "not written by torch.save");
}

TEST(TorchFileErrors, TruncatedLegacyFileAtEveryLength) {
  for (const std::string name : {"state_dict.legacy.pt", "misc.legacy.pt"}) {
    const std::string bytes = read_file(fixture(name));
    for (size_t n = 0; n < bytes.size(); ++n) {
      const std::string message = error_of([&] { load_torch_bytes(bytes.substr(0, n), name); });
      ASSERT_NE(message.find("load_torch_bytes: " + name), std::string::npos)
          << "length " << n << ": " << message;
    }
  }
}

TEST(TorchFileErrors, TruncatedZipFile) {
  for (const std::string name : {"state_dict.zip.pt", "misc.p4.zip.pt"}) {
    const std::string bytes = read_file(fixture(name));
    for (size_t n = 0; n < bytes.size(); n += (n + 64 < bytes.size() ? 29 : 1)) {
      const std::string message = error_of([&] { load_torch_bytes(bytes.substr(0, n), name); });
      ASSERT_NE(message.find("load_torch_bytes: " + name), std::string::npos)
          << "length " << n << ": " << message;
    }
    TempDir dir;
    write_file(dir.file("cut.pt"), bytes.substr(0, bytes.size() / 2));
    EXPECT_ERROR_HAS(load_torch_file(dir.file("cut.pt")), "not a readable torch.save zip archive");
  }
}

TEST(TorchFileErrors, CorruptedLegacyBytesNeverCrash) {
  // Each mutant either loads or throws c10::Error; nothing else.
  const std::string original = read_file(fixture("state_dict.legacy.pt"));
  std::mt19937 rng(11);
  std::uniform_int_distribution<size_t> where(0, original.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int failed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = original;
    for (int j = 0; j <= i % 3; ++j) {
      bytes[where(rng)] = static_cast<char>(byte(rng));
    }
    try {
      load_torch_bytes(bytes, "mutant");
    } catch (const c10::Error&) {
      ++failed;
    }
  }
  EXPECT_GT(failed, 0);
}

TEST(TorchFileErrors, ZipWithoutDataPkl) {
  std::string bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      bytes.append(static_cast<const char*>(data), size);
      return size;
    });
    const std::string text = "not a pickle";
    writer.writeRecord("notes.txt", text.data(), text.size());
    writer.writeEndOfFile();
  }
  EXPECT_ERROR_HAS(load_torch_bytes(bytes, "archive"), "archive: the zip archive has no data.pkl");
}

TEST(LoadStateDict, FilesWithoutATensorDict) {
  EXPECT_ERROR_HAS(load_state_dict(fixture("misc.zip.pt")), "no tensor dict found");
  TempDir dir;
  {
    const auto bytes = torch::pickle_save(c10::List<int64_t>({1, 2}));
    write_file(dir.file("list.pt"), std::string(bytes.begin(), bytes.end()));
  }
  EXPECT_ERROR_HAS(load_state_dict(dir.file("list.pt")), "holds a GenericList, not a state dict");
}

// ---------------------------------------------------------------------------
// Writing.

TEST(SaveStateDict, RoundTripsThroughTheReader) {
  TempDir dir;
  StateDict state;
  const auto big = torch::arange(1000, torch::kFloat32);
  state.insert("module.slice", big.slice(0, 10, 14));  // a slice of a large storage
  state.insert("transposed", torch::arange(6.0).view({2, 3}).t());
  state.insert("half", torch::tensor({1.5f, -2.0f}).to(torch::kHalf));
  state.insert("count", torch::tensor(int64_t{9}));
  state.insert("grad", torch::ones({2}, torch::requires_grad()));
  const std::string path = dir.file("state.pt");
  write_file(path, "old content");  // replaced
  save_state_dict(state, path);
  EXPECT_LT(fs::file_size(path), 4000u);  // not the 1000-element storage
  // Only the target file: the temporary file is gone.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  const StateDict loaded = load_state_dict(path);
  EXPECT_EQ(loaded.keys(),
            (std::vector<std::string>{"slice", "transposed", "half", "count", "grad"}));
  EXPECT_TRUE(torch::equal(loaded["slice"], torch::tensor({10.0f, 11.0f, 12.0f, 13.0f})));
  EXPECT_TRUE(torch::equal(loaded["transposed"], torch::arange(6.0).view({2, 3}).t()));
  EXPECT_TRUE(loaded["transposed"].is_contiguous());
  EXPECT_EQ(loaded["half"].scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(loaded["half"].to(torch::kFloat), torch::tensor({1.5f, -2.0f})));
  EXPECT_EQ(loaded["count"].dim(), 0);
  EXPECT_EQ(loaded["count"].item<int64_t>(), 9);
  EXPECT_FALSE(loaded["grad"].requires_grad());
  // Saved detached: not even the raw file asks for gradients.
  EXPECT_FALSE(at(load_torch_file(path), "grad").toTensor().requires_grad());
}

TEST(SaveStateDict, UnwritableFolderNamesThePath) {
  const std::string path = "/nonexistent-tandem-folder/out.pt";
  StateDict state;
  state.insert("x", torch::ones({1}));
  EXPECT_ERROR_HAS(save_state_dict(state, path), path);
}

// ---------------------------------------------------------------------------
// Round trips with Python's torch (the project venv's, the same release as
// the LibTorch linked here).

using testing::kPython;

bool python_has_torch() {
  return testing::python_has("torch");
}

/// Runs `script` with `args`; the test fails with its output unless it exits 0.
void run_python(const TempDir& dir, const std::string& script, const std::string& args) {
  const std::string script_path = dir.file("script.py");
  const std::string log_path = dir.file("script.log");
  write_file(script_path, script);
  const std::string command =
      std::string(kPython) + " " + script_path + " " + args + " > " + log_path + " 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << " failed:\n"
                                                             << read_file(log_path);
}

TEST(StateDictPython, CppSaveLoadsIntoAPythonModule) {
  if (!python_has_torch()) {
    GTEST_SKIP() << kPython << " cannot import torch; the Python round trip is not tested";
  }
  TempDir dir;
  // The state of torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).
  StateDict state;
  state.insert("0.weight", (torch::arange(6.0f) * 0.5f - 1.0f).view({3, 2}).t());  // non-contiguous
  state.insert("0.bias", torch::tensor({0.25f, -0.75f}));
  state.insert("1.weight", torch::tensor({2.0f, 3.0f}));
  state.insert("1.bias", torch::tensor({-1.0f, 1.0f}));
  state.insert("1.running_mean", torch::tensor({0.125f, 0.5f}));
  state.insert("1.running_var", torch::tensor({4.0f, 9.0f}));
  state.insert("1.num_batches_tracked", torch::tensor(int64_t{9}));
  const std::string path = dir.file("from_cpp.pt");
  save_state_dict(state, path);
  run_python(dir, R"(
import sys, torch
sd = torch.load(sys.argv[1])
assert isinstance(sd, dict), type(sd)
assert list(sd) == ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean',
                    '1.running_var', '1.num_batches_tracked'], list(sd)
m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
m.load_state_dict(sd)  # strict: the keys match exactly
assert torch.equal(m[0].weight, (torch.arange(6.) * 0.5 - 1).view(3, 2).t()), m[0].weight
assert torch.equal(m[0].bias, torch.tensor([0.25, -0.75]))
assert torch.equal(m[1].weight, torch.tensor([2., 3.]))
assert torch.equal(m[1].bias, torch.tensor([-1., 1.]))
assert torch.equal(m[1].running_mean, torch.tensor([0.125, 0.5]))
assert torch.equal(m[1].running_var, torch.tensor([4., 9.]))
assert m[1].num_batches_tracked.dtype == torch.int64 and m[1].num_batches_tracked.item() == 9
print('ok')
)",
             path);
}

TEST(StateDictPython, PythonSaveLoadsInCppInBothFormats) {
  if (!python_has_torch()) {
    GTEST_SKIP() << kPython << " cannot import torch; the Python round trip is not tested";
  }
  TempDir dir;
  // A randomly initialised, trained-for-a-step model; the script writes its
  // state with exact (hexadecimal) values: key, ndim, sizes, numel, values.
  run_python(dir, R"(
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5))
m(torch.randn(2, 3, 6, 6))  # updates the batch norm statistics
sd = m.state_dict()
torch.save(sd, sys.argv[1] + '/zip.pt')
torch.save(sd, sys.argv[1] + '/legacy.pt', _use_new_zipfile_serialization=False)
with open(sys.argv[1] + '/expected.txt', 'w') as f:
    for key, t in sd.items():
        values = [float(v).hex() for v in t.flatten().tolist()]
        f.write(' '.join([key, str(t.dim())] + [str(s) for s in t.shape] +
                         [str(t.numel())] + values) + '\n')
)",
             dir.path().string());
  std::ifstream expected(dir.file("expected.txt"));
  std::vector<std::string> keys;
  std::vector<torch::Tensor> values;
  std::string line;
  while (std::getline(expected, line)) {
    std::istringstream fields(line);
    std::string key;
    int64_t ndim = 0;
    fields >> key >> ndim;
    std::vector<int64_t> shape(static_cast<size_t>(ndim));
    for (auto& size : shape) {
      fields >> size;
    }
    int64_t numel = 0;
    fields >> numel;
    std::vector<double> data;
    std::string hex;
    while (fields >> hex) {
      data.push_back(std::strtod(hex.c_str(), nullptr));
    }
    ASSERT_EQ(static_cast<int64_t>(data.size()), numel) << line;
    keys.push_back(key);
    values.push_back(torch::tensor(data, torch::kFloat64).view(shape));
  }
  ASSERT_EQ(keys.size(), 9u);  // conv 2, batch norm 5, linear 2
  for (const std::string format : {"zip", "legacy"}) {
    SCOPED_TRACE(format);
    const StateDict loaded = load_state_dict(dir.file(format + ".pt"));
    ASSERT_EQ(loaded.keys(), keys);
    for (size_t i = 0; i < keys.size(); ++i) {
      SCOPED_TRACE(keys[i]);
      const auto& tensor = loaded[keys[i]];
      EXPECT_EQ(tensor.scalar_type(),
                keys[i] == "1.num_batches_tracked" ? torch::kInt64 : torch::kFloat32);
      EXPECT_TRUE(torch::equal(tensor.to(torch::kFloat64), values[i]));
    }
    EXPECT_EQ(loaded["1.num_batches_tracked"].item<int64_t>(), 1);
  }
}

}  // namespace
}  // namespace tandem::methods
