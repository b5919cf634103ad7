#include "tandem/methods/serialization.h"

#include "tandem/methods/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <caffe2/serialize/file_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

namespace tandem::methods {
namespace {

// ---------------------------------------------------------------------------
// Pickle opcodes (Python's Lib/pickletools.py documents each one).

enum Opcode : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinFloat = 'G',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  // Protocol 2.
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  // Protocol 4.
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

/// The legacy format's first pickle: 0x1950a86a20f9469cfc6c, little-endian.
constexpr std::string_view kLegacyMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
constexpr int64_t kLegacyProtocolVersion = 1001;
constexpr std::string_view kZipMagic("PK\x03\x04", 4);

// ---------------------------------------------------------------------------
// Values on the unpickler's stack.

struct Special;

/// One value on the unpickler's stack or in its memo: an IValue, plus what the
/// unpickler needs to know of Python values that have no IValue form.
struct Item {
  /// What the item becomes in the result (None for classes, functions,
  /// storages and objects of unknown classes).
  c10::IValue value;
  /// Set for the values that are not plain IValues.
  std::shared_ptr<const Special> special;
};

struct Special {
  enum class Kind {
    kGlobal,   // a class or function named by GLOBAL / STACK_GLOBAL
    kObject,   // an instance of a class this reader does not know
    kStorage,  // a storage from a persistent id
    kBigInt,   // a Python int that does not fit in int64
    kTuple,    // a tuple holding some of the above
  };
  Kind kind;
  std::string module;  // kGlobal, kObject: the class or function
  std::string name;
  torch::Tensor storage;    // kStorage: the storage's elements, 1-D
  std::string bytes;        // kBigInt: little-endian two's complement
  std::vector<Item> items;  // kTuple
};

Item plain(c10::IValue value) {
  return Item{std::move(value), nullptr};
}

Item make_special(Special special) {
  return Item{c10::IValue(), std::make_shared<const Special>(std::move(special))};
}

Item make_global(std::string module, std::string name) {
  return make_special(
      Special{Special::Kind::kGlobal, std::move(module), std::move(name), {}, {}, {}});
}

Item make_object(std::string module, std::string name) {
  return make_special(
      Special{Special::Kind::kObject, std::move(module), std::move(name), {}, {}, {}});
}

Item make_storage(torch::Tensor elements) {
  return make_special(Special{Special::Kind::kStorage, {}, {}, std::move(elements), {}, {}});
}

bool is_kind(const Item& item, Special::Kind kind) {
  return item.special != nullptr && item.special->kind == kind;
}

bool is_global(const Item& item, std::string_view module, std::string_view name) {
  return is_kind(item, Special::Kind::kGlobal) && item.special->module == module &&
         item.special->name == name;
}

std::string describe(const Item& item) {
  if (item.special == nullptr) {
    return item.value.tagKind();
  }
  const Special& s = *item.special;
  switch (s.kind) {
    case Special::Kind::kGlobal: return "global " + s.module + "." + s.name;
    case Special::Kind::kObject: return "object of class " + s.module + "." + s.name;
    case Special::Kind::kStorage: return "storage";
    case Special::Kind::kBigInt: return "integer wider than 64 bits";
    case Special::Kind::kTuple: return "Tuple";
  }
  return "value";
}

/// Storage class names (torch.FloatStorage, and torch.cuda.FloatStorage in old
/// files saved from a GPU) to dtypes.
std::optional<c10::ScalarType> storage_dtype(std::string_view module, std::string_view name) {
  if (module != "torch" && module != "torch.cuda") {
    return std::nullopt;
  }
  static const std::unordered_map<std::string_view, c10::ScalarType> types = {
      {"FloatStorage", c10::kFloat},
      {"DoubleStorage", c10::kDouble},
      {"HalfStorage", c10::kHalf},
      {"BFloat16Storage", c10::kBFloat16},
      {"LongStorage", c10::kLong},
      {"IntStorage", c10::kInt},
      {"ShortStorage", c10::kShort},
      {"CharStorage", c10::kChar},
      {"ByteStorage", c10::kByte},
      {"BoolStorage", c10::kBool},
      {"ComplexFloatStorage", c10::kComplexFloat},
      {"ComplexDoubleStorage", c10::kComplexDouble},
      {"UntypedStorage", c10::kByte},
  };
  const auto found = types.find(name);
  if (found == types.end()) {
    return std::nullopt;
  }
  return found->second;
}

// ---------------------------------------------------------------------------
// The unpickler.

/// Runs pickles from a byte range, one per load(). It knows the classes and
/// functions torch.save uses; storages come from the persistent loader, which
/// differs between the zip and the legacy format.
class Unpickler {
 public:
  using PersistentLoad = std::function<Item(Unpickler&, const std::vector<Item>&)>;

  /// `where` starts every error message: the public function and the file.
  Unpickler(std::string_view data, std::string where) : data_(data), where_(std::move(where)) {}

  void set_persistent_load(PersistentLoad load) { persistent_load_ = std::move(load); }

  /// Runs the pickle that starts at the current position up to its STOP, and
  /// leaves the position after the STOP.
  Item load();

  size_t position() const { return pos_; }

  /// Throws c10::Error: where_, the message, and the offset of the opcode.
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    TORCH_CHECK(false, where_, ": ", args..., " (pickle opcode at offset ", op_pos_, ")");
    std::abort();  // not reached; TORCH_CHECK(false) always throws
  }

  /// The IValue an item stands for; an error for integers wider than 64 bits.
  const c10::IValue& value_of(const Item& item) const {
    if (is_kind(item, Special::Kind::kBigInt)) {
      fail("integer of ", item.special->bytes.size(), " bytes does not fit in int64");
    }
    return item.value;
  }

  /// The fields of a tuple.
  std::vector<Item> fields(const Item& tuple, const char* what) const {
    if (is_kind(tuple, Special::Kind::kTuple)) {
      return tuple.special->items;
    }
    if (tuple.special == nullptr && tuple.value.isTuple()) {
      std::vector<Item> out;
      for (const auto& element : tuple.value.toTupleRef().elements()) {
        out.push_back(plain(element));
      }
      return out;
    }
    fail(what, " must be a tuple, got ", describe(tuple));
  }

  std::string to_string(const Item& item, const char* what) const {
    if (item.special != nullptr || !item.value.isString()) {
      fail(what, " must be a string, got ", describe(item));
    }
    return item.value.toStringRef();
  }

  int64_t to_int(const Item& item, const char* what) const {
    if (item.special != nullptr || !item.value.isInt()) {
      fail(what, " must be an integer, got ", describe(item));
    }
    return item.value.toInt();
  }

  bool to_bool(const Item& item, const char* what) const {
    if (item.special != nullptr || !item.value.isBool()) {
      fail(what, " must be a bool, got ", describe(item));
    }
    return item.value.toBool();
  }

  /// A tensor on `elements` (a 1-D storage) after checking that every element
  /// it reaches lies inside it.
  torch::Tensor make_view(const torch::Tensor& elements, int64_t offset,
                          const std::vector<int64_t>& sizes,
                          const std::vector<int64_t>& strides) const;

 private:
  size_t remaining() const { return data_.size() - pos_; }
  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail("truncated data: ", what, " needs ", n, " bytes, ", remaining(), " left");
    }
  }
  uint8_t read_u8(const char* what) {
    need(1, what);
    return static_cast<uint8_t>(data_[pos_++]);
  }
  template <typename T>
  T read_le(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_.data() + pos_, sizeof(T));  // x86 and ARM Linux are little-endian
    pos_ += sizeof(T);
    return value;
  }
  std::string_view read_bytes(uint64_t n, const char* what) {
    need(n, what);
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  std::string_view read_line(const char* what) {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) {
      fail("truncated data: ", what, " has no end of line");
    }
    const std::string_view out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Item item) { stack_.push_back(std::move(item)); }
  Item pop() {
    if (stack_.size() <= frame_base()) {
      fail("stack underflow");
    }
    Item out = std::move(stack_.back());
    stack_.pop_back();
    return out;
  }
  Item& top() {
    if (stack_.size() <= frame_base()) {
      fail("stack underflow");
    }
    return stack_.back();
  }
  std::vector<Item> pop_mark() {
    if (marks_.empty()) {
      fail("no MARK on the stack");
    }
    const size_t base = marks_.back();
    marks_.pop_back();
    std::vector<Item> out(std::make_move_iterator(stack_.begin() + static_cast<ptrdiff_t>(base)),
                          std::make_move_iterator(stack_.end()));
    stack_.resize(base);
    return out;
  }

  Item make_int_from_long(std::string_view bytes) const;
  Item make_text_int(std::string_view text, bool is_long) const;
  Item make_tuple(std::vector<Item> items) const;
  void append(Item& list, const std::vector<Item>& values) const;
  void set_items(Item& dict, const std::vector<Item>& keys_and_values) const;
  Item call(const Item& callable, const Item& args, bool newobj);
  Item make_dict(const std::vector<Item>& args, const Special& cls) const;
  Item rebuild_tensor(const std::vector<Item>& args, bool v2) const;
  Item rebuild_parameter(const std::vector<Item>& args) const;
  Item encode(const std::vector<Item>& args) const;
  std::vector<int64_t> int_tuple(const Item& item, const char* what) const;

  std::string_view data_;
  std::string where_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  PersistentLoad persistent_load_;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Item> memo_;
};

Item Unpickler::load() {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= data_.size()) {
      fail("truncated data: the pickle ends without STOP");
    }
    const auto op = static_cast<uint8_t>(data_[pos_++]);
    switch (op) {
      case kProto: {
        const uint8_t version = read_u8("PROTO");
        if (version > 5) {
          fail("unsupported pickle protocol ", static_cast<int>(version));
        }
        break;
      }
      case kFrame: {
        const auto size = read_le<uint64_t>("FRAME");
        need(size, "FRAME");  // framing only groups opcodes; they are read as usual
        break;
      }
      case kStop: return pop();
      case kMark: marks_.push_back(stack_.size()); break;
      case kPop:
        // POP right after a MARK discards the mark (as Python's unpickler).
        if (!marks_.empty() && stack_.size() == marks_.back()) {
          marks_.pop_back();
        } else {
          pop();
        }
        break;
      case kPopMark: pop_mark(); break;
      case kDup: {
        Item copy = top();
        push(std::move(copy));
        break;
      }
      case kNone: push(plain(c10::IValue())); break;
      case kNewTrue: push(plain(true)); break;
      case kNewFalse: push(plain(false)); break;
      case kInt: push(make_text_int(read_line("INT"), /*is_long=*/false)); break;
      case kLong: push(make_text_int(read_line("LONG"), /*is_long=*/true)); break;
      case kBinInt: push(plain(static_cast<int64_t>(read_le<int32_t>("BININT")))); break;
      case kBinInt1: push(plain(static_cast<int64_t>(read_u8("BININT1")))); break;
      case kBinInt2: push(plain(static_cast<int64_t>(read_le<uint16_t>("BININT2")))); break;
      case kLong1: {
        const uint8_t n = read_u8("LONG1");
        push(make_int_from_long(read_bytes(n, "LONG1")));
        break;
      }
      case kLong4: {
        const auto n = read_le<int32_t>("LONG4");
        if (n < 0) {
          fail("LONG4 with negative length ", n);
        }
        push(make_int_from_long(read_bytes(static_cast<uint64_t>(n), "LONG4")));
        break;
      }
      case kBinFloat: {
        const std::string_view bytes = read_bytes(8, "BINFLOAT");
        char little[8];
        for (int i = 0; i < 8; ++i) {
          little[i] = bytes[7 - i];  // BINFLOAT is big-endian
        }
        double value;
        std::memcpy(&value, little, sizeof(value));
        push(plain(value));
        break;
      }
      case kBinUnicode:
        push(plain(std::string(read_bytes(read_le<uint32_t>("BINUNICODE"), "BINUNICODE"))));
        break;
      case kShortBinUnicode:
        push(plain(std::string(read_bytes(read_u8("SHORT_BINUNICODE"), "SHORT_BINUNICODE"))));
        break;
      case kBinUnicode8:
        push(plain(std::string(read_bytes(read_le<uint64_t>("BINUNICODE8"), "BINUNICODE8"))));
        break;
      case kBinString: {
        const auto n = read_le<int32_t>("BINSTRING");
        if (n < 0) {
          fail("BINSTRING with negative length ", n);
        }
        push(plain(std::string(read_bytes(static_cast<uint64_t>(n), "BINSTRING"))));
        break;
      }
      case kShortBinString:
        push(plain(std::string(read_bytes(read_u8("SHORT_BINSTRING"), "SHORT_BINSTRING"))));
        break;
      case kBinBytes:
        push(plain(std::string(read_bytes(read_le<uint32_t>("BINBYTES"), "BINBYTES"))));
        break;
      case kShortBinBytes:
        push(plain(std::string(read_bytes(read_u8("SHORT_BINBYTES"), "SHORT_BINBYTES"))));
        break;
      case kBinBytes8:
        push(plain(std::string(read_bytes(read_le<uint64_t>("BINBYTES8"), "BINBYTES8"))));
        break;
      case kEmptyTuple: push(make_tuple({})); break;
      case kTuple: push(make_tuple(pop_mark())); break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const size_t n = op - kTuple1 + 1;
        std::vector<Item> items(n);
        for (size_t i = n; i-- > 0;) {
          items[i] = pop();
        }
        push(make_tuple(std::move(items)));
        break;
      }
      case kEmptyList: push(plain(c10::impl::GenericList(c10::AnyType::get()))); break;
      case kAppend: {
        Item value = pop();
        append(top(), {value});
        break;
      }
      case kAppends: {
        std::vector<Item> values = pop_mark();
        append(top(), values);
        break;
      }
      case kList: {
        std::vector<Item> values = pop_mark();
        Item list = plain(c10::impl::GenericList(c10::AnyType::get()));
        append(list, values);
        push(std::move(list));
        break;
      }
      case kEmptyDict:
        push(plain(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get())));
        break;
      case kSetItem: {
        Item value = pop();
        Item key = pop();
        set_items(top(), {key, value});
        break;
      }
      case kSetItems: {
        std::vector<Item> keys_and_values = pop_mark();
        set_items(top(), keys_and_values);
        break;
      }
      case kDict: {
        std::vector<Item> keys_and_values = pop_mark();
        Item dict = plain(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()));
        set_items(dict, keys_and_values);
        push(std::move(dict));
        break;
      }
      case kBinPut: {
        const uint8_t index = read_u8("BINPUT");
        memo_[index] = top();
        break;
      }
      case kLongBinPut: {
        const auto index = read_le<uint32_t>("LONG_BINPUT");
        memo_[index] = top();
        break;
      }
      case kMemoize: {
        const uint64_t index = memo_.size();
        memo_[index] = top();
        break;
      }
      case kBinGet:
      case kLongBinGet: {
        const uint64_t index = op == kBinGet ? read_u8("BINGET") : read_le<uint32_t>("LONG_BINGET");
        const auto found = memo_.find(index);
        if (found == memo_.end()) {
          fail("memo entry ", index, " is not defined");
        }
        push(found->second);
        break;
      }
      case kGlobal: {
        std::string module(read_line("GLOBAL"));
        std::string name(read_line("GLOBAL"));
        push(make_global(std::move(module), std::move(name)));
        break;
      }
      case kStackGlobal: {
        std::string name = to_string(pop(), "STACK_GLOBAL name");
        std::string module = to_string(pop(), "STACK_GLOBAL module");
        push(make_global(std::move(module), std::move(name)));
        break;
      }
      case kReduce:
      case kNewObj: {
        Item args = pop();
        Item callable = pop();
        push(call(callable, args, /*newobj=*/op == kNewObj));
        break;
      }
      case kBuild:
        // BUILD sets an object's state: the attributes of a state dict
        // (_metadata), numpy dtypes, objects that load as None. Nothing
        // this reader returns keeps it.
        pop();
        top();
        break;
      case kBinPersId: {
        Item pid = pop();
        if (!persistent_load_) {
          fail("BINPERSID in a pickle that cannot reference storages");
        }
        push(persistent_load_(*this, fields(pid, "persistent id")));
        break;
      }
      default: {
        constexpr char kHex[] = "0123456789abcdef";
        const char hex[] = {'0', 'x', kHex[op >> 4], kHex[op & 15], '\0'};
        if (op >= 0x20 && op < 0x7f) {
          fail("unsupported pickle opcode ", hex, " ('", static_cast<char>(op), "')");
        }
        fail("unsupported pickle opcode ", hex);
      }
    }
  }
}

Item Unpickler::make_int_from_long(std::string_view bytes) const {
  // Two's complement, little-endian; drop the bytes that only extend the sign.
  size_t n = bytes.size();
  while (n > 8) {
    const auto last = static_cast<uint8_t>(bytes[n - 1]);
    const auto before = static_cast<uint8_t>(bytes[n - 2]);
    if ((last == 0x00 && (before & 0x80) == 0) || (last == 0xff && (before & 0x80) != 0)) {
      --n;
    } else {
      break;
    }
  }
  if (n > 8) {
    return make_special(
        Special{Special::Kind::kBigInt, {}, {}, {}, std::string(bytes.substr(0, n)), {}});
  }
  uint64_t value = 0;
  for (size_t i = 0; i < n; ++i) {
    value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  }
  if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80) != 0) {
    value |= ~uint64_t{0} << (8 * n);  // negative: extend the sign
  }
  return plain(static_cast<int64_t>(value));
}

Item Unpickler::make_text_int(std::string_view text, bool is_long) const {
  if (!is_long && text == "01") {
    return plain(true);  // protocol 0 spells True and False as INT
  }
  if (!is_long && text == "00") {
    return plain(false);
  }
  if (is_long && !text.empty() && text.back() == 'L') {
    text.remove_suffix(1);
  }
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    fail(is_long ? "LONG" : "INT", " '", text, "' is not a 64-bit integer");
  }
  return plain(value);
}

Item Unpickler::make_tuple(std::vector<Item> items) const {
  std::vector<c10::IValue> values;
  values.reserve(items.size());
  bool all_plain = true;
  for (const auto& item : items) {
    values.push_back(value_of(item));
    all_plain = all_plain && item.special == nullptr;
  }
  c10::IValue tuple(c10::ivalue::Tuple::create(std::move(values)));
  if (all_plain) {
    return plain(std::move(tuple));
  }
  // Keep the fields: the tuple may be a persistent id or the arguments of a
  // call, which need the classes and storages that are None in the IValue.
  auto special =
      std::make_shared<Special>(Special{Special::Kind::kTuple, {}, {}, {}, {}, std::move(items)});
  return Item{std::move(tuple), std::move(special)};
}

void Unpickler::append(Item& list, const std::vector<Item>& values) const {
  if (is_kind(list, Special::Kind::kObject)) {
    return;  // an object of an unknown class that loads as None
  }
  if (list.special != nullptr || !list.value.isList()) {
    fail("APPEND to a ", describe(list), ", not a list");
  }
  auto elements = list.value.toList();
  for (const auto& value : values) {
    elements.push_back(value_of(value));
  }
}

void Unpickler::set_items(Item& dict, const std::vector<Item>& keys_and_values) const {
  if (is_kind(dict, Special::Kind::kObject)) {
    return;  // an object of an unknown class that loads as None
  }
  if (dict.special != nullptr || !dict.value.isGenericDict()) {
    fail("SETITEM on a ", describe(dict), ", not a dict");
  }
  if (keys_and_values.size() % 2 != 0) {
    fail("SETITEMS with an odd number of keys and values (", keys_and_values.size(), ")");
  }
  auto entries = dict.value.toGenericDict();
  for (size_t i = 0; i < keys_and_values.size(); i += 2) {
    const c10::IValue& key = value_of(keys_and_values[i]);
    if (!(key.isString() || key.isInt() || key.isDouble() || key.isBool() || key.isTensor())) {
      fail("unsupported dict key type ", describe(keys_and_values[i]),
           " (supported: str, int, float, bool, tensor)");
    }
    entries.insert_or_assign(key, value_of(keys_and_values[i + 1]));
  }
}

Item Unpickler::call(const Item& callable, const Item& args_item, bool newobj) {
  if (!is_kind(callable, Special::Kind::kGlobal)) {
    fail(newobj ? "NEWOBJ" : "REDUCE", " on a ", describe(callable),
         ", not on a class or function");
  }
  const Special& f = *callable.special;
  const std::vector<Item> args = fields(args_item, "the arguments of a call");
  const std::string& m = f.module;
  const std::string& n = f.name;
  if ((m == "collections" && (n == "OrderedDict" || n == "defaultdict")) ||
      ((m == "builtins" || m == "__builtin__") && n == "dict")) {
    return make_dict(args, f);
  }
  if (m == "torch._utils") {
    if (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor") {
      return rebuild_tensor(args, /*v2=*/n == "_rebuild_tensor_v2");
    }
    if (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state") {
      return rebuild_parameter(args);
    }
    fail("unsupported tensor kind torch._utils.", n,
         " (only dense tensors on storages can be read)");
  }
  if (m == "torch._tensor" && n == "_rebuild_from_type_v2") {
    // (func, type, args, state): the tensor is func(*args); its Python
    // subclass and state have no C++ counterpart.
    if (args.size() < 3) {
      fail("torch._tensor._rebuild_from_type_v2 needs 4 arguments, got ", args.size());
    }
    if (!is_kind(args[0], Special::Kind::kGlobal) ||
        is_global(args[0], "torch._tensor", "_rebuild_from_type_v2")) {
      fail("torch._tensor._rebuild_from_type_v2 with function ", describe(args[0]));
    }
    return call(args[0], args[2], /*newobj=*/false);
  }
  if (m == "torch._tensor" || m == "torch._utils") {
    fail("unsupported tensor kind ", m, ".", n);
  }
  if (m == "torch" && n == "Size") {
    if (args.size() != 1) {
      fail("torch.Size needs 1 argument, got ", args.size());
    }
    return make_tuple(fields(args[0], "the argument of torch.Size"));
  }
  if (m == "torch.jit._pickle" &&
      (n == "restore_type_tag" || n == "build_intlist" || n == "build_doublelist" ||
       n == "build_boollist" || n == "build_tensorlist")) {
    // LibTorch's pickler (torch::pickle_save) wraps typed containers in these:
    // each returns its first argument.
    if (args.empty()) {
      fail(m, ".", n, " needs an argument");
    }
    return args[0];
  }
  if (m == "_codecs" && n == "encode") {
    return encode(args);
  }
  return make_object(m, n);
}

Item Unpickler::make_dict(const std::vector<Item>& args, const Special& cls) const {
  Item dict = plain(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()));
  if (cls.name == "defaultdict" || args.empty()) {
    return dict;  // Python 3 pickles the items with SETITEMS after the call
  }
  if (args.size() != 1) {
    fail(cls.module, ".", cls.name, " called with ", args.size(), " arguments");
  }
  // Python 2 pickles OrderedDict as OrderedDict([[key, value], ...]).
  const c10::IValue& source = value_of(args[0]);
  std::vector<Item> keys_and_values;
  if (source.isGenericDict()) {
    for (const auto& entry : source.toGenericDict()) {
      keys_and_values.push_back(plain(entry.key()));
      keys_and_values.push_back(plain(entry.value()));
    }
  } else if (source.isList() || source.isTuple()) {
    const std::vector<c10::IValue> pairs =
        source.isList() ? source.toList().vec() : source.toTupleRef().elements().vec();
    for (const auto& pair : pairs) {
      std::vector<c10::IValue> key_value;
      if (pair.isList()) {
        key_value = pair.toList().vec();
      } else if (pair.isTuple()) {
        key_value = pair.toTupleRef().elements().vec();
      }
      if (key_value.size() != 2) {
        fail(cls.module, ".", cls.name, " argument is not a sequence of (key, value) pairs");
      }
      keys_and_values.push_back(plain(key_value[0]));
      keys_and_values.push_back(plain(key_value[1]));
    }
  } else {
    fail(cls.module, ".", cls.name, " called with a ", describe(args[0]));
  }
  set_items(dict, keys_and_values);
  return dict;
}

std::vector<int64_t> Unpickler::int_tuple(const Item& item, const char* what) const {
  std::vector<int64_t> out;
  const c10::IValue& value = value_of(item);
  if (value.isTuple()) {
    for (const auto& element : value.toTupleRef().elements()) {
      if (!element.isInt()) {
        fail(what, " must hold integers, got ", element.tagKind());
      }
      out.push_back(element.toInt());
    }
    return out;
  }
  fail(what, " must be a tuple of integers, got ", describe(item));
}

torch::Tensor Unpickler::make_view(const torch::Tensor& elements, int64_t offset,
                                   const std::vector<int64_t>& sizes,
                                   const std::vector<int64_t>& strides) const {
  if (sizes.size() != strides.size()) {
    fail("tensor has ", sizes.size(), " sizes but ", strides.size(), " strides");
  }
  const int64_t available = elements.numel();
  if (offset < 0 || offset > available) {
    fail("tensor storage offset ", offset, " is outside its storage of ", available, " elements");
  }
  bool empty = false;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 0 || strides[i] < 0) {
      fail("tensor has a negative size or stride: size ", c10::IntArrayRef(sizes), ", stride ",
           c10::IntArrayRef(strides));
    }
    empty = empty || sizes[i] == 0;
  }
  if (!empty) {
    // The last element a tensor reaches is offset + sum((size - 1) * stride).
    int64_t last = offset;
    for (size_t i = 0; i < sizes.size(); ++i) {
      int64_t step = 0;
      if (__builtin_mul_overflow(sizes[i] - 1, strides[i], &step) ||
          __builtin_add_overflow(last, step, &last)) {
        fail("tensor of size ", c10::IntArrayRef(sizes), " and stride ", c10::IntArrayRef(strides),
             " overflows int64");
      }
    }
    if (last >= available) {
      fail("tensor of size ", c10::IntArrayRef(sizes), ", stride ", c10::IntArrayRef(strides),
           " and offset ", offset, " reaches element ", last, " of a storage of ", available,
           " elements");
    }
  }
  auto tensor = torch::empty({0}, elements.options());
  tensor.set_(elements.storage(), elements.storage_offset() + offset, sizes, strides);
  return tensor;
}

Item Unpickler::rebuild_tensor(const std::vector<Item>& args, bool v2) const {
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  // backward_hooks[, metadata]); _rebuild_tensor(storage, offset, size, stride).
  const char* name = v2 ? "torch._utils._rebuild_tensor_v2" : "torch._utils._rebuild_tensor";
  if (args.size() < 4) {
    fail(name, " needs at least 4 arguments, got ", args.size());
  }
  if (!is_kind(args[0], Special::Kind::kStorage)) {
    fail(name, " on a ", describe(args[0]), ", not on a storage");
  }
  auto tensor = make_view(args[0].special->storage, to_int(args[1], "tensor storage offset"),
                          int_tuple(args[2], "tensor size"), int_tuple(args[3], "tensor stride"));
  if (v2 && args.size() > 4 && to_bool(args[4], "requires_grad") &&
      (tensor.is_floating_point() || tensor.is_complex())) {
    tensor.requires_grad_(true);
  }
  return plain(tensor);
}

Item Unpickler::rebuild_parameter(const std::vector<Item>& args) const {
  // _rebuild_parameter(data, requires_grad, backward_hooks[, state]).
  if (args.size() < 2 || !value_of(args[0]).isTensor()) {
    fail("torch._utils._rebuild_parameter needs a tensor and requires_grad");
  }
  // A new tensor on the same storage, as Python's Parameter is a new object.
  auto tensor = args[0].value.toTensor().detach();
  if (to_bool(args[1], "requires_grad") && (tensor.is_floating_point() || tensor.is_complex())) {
    tensor.requires_grad_(true);
  }
  return plain(tensor);
}

Item Unpickler::encode(const std::vector<Item>& args) const {
  // Protocol 2 pickles Python 3 bytes as _codecs.encode(text, 'latin1'): each
  // character of text is one byte.
  if (args.size() != 2) {
    fail("_codecs.encode needs 2 arguments, got ", args.size());
  }
  const std::string text = to_string(args[0], "_codecs.encode text");
  const std::string encoding = to_string(args[1], "_codecs.encode encoding");
  if (encoding != "latin1" && encoding != "latin-1" && encoding != "iso-8859-1") {
    fail("unsupported _codecs.encode encoding '", encoding, "'");
  }
  std::string bytes;
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<uint8_t>(text[i]);
    if (lead < 0x80) {
      bytes.push_back(static_cast<char>(lead));
      i += 1;
    } else if ((lead & 0xe0) == 0xc0 && i + 1 < text.size() &&
               (static_cast<uint8_t>(text[i + 1]) & 0xc0) == 0x80 && lead <= 0xc3) {
      bytes.push_back(static_cast<char>(((lead & 0x1f) << 6) | (text[i + 1] & 0x3f)));
      i += 2;
    } else {
      fail("_codecs.encode text is not latin-1 UTF-8 (byte ", i, ")");
    }
  }
  return plain(std::move(bytes));
}

// ---------------------------------------------------------------------------
// Storages of the two formats.

/// The dtype a persistent id's storage class names.
c10::ScalarType persistent_dtype(const Unpickler& u, const Item& type) {
  if (!is_kind(type, Special::Kind::kGlobal)) {
    u.fail("storage type must be a class like torch.FloatStorage, got ", describe(type));
  }
  const auto dtype = storage_dtype(type.special->module, type.special->name);
  if (!dtype) {
    u.fail("unsupported storage type ", type.special->module, ".", type.special->name);
  }
  return *dtype;
}

/// Storages of the zip format: record data/<key>, read when first referenced.
class ZipStorages {
 public:
  explicit ZipStorages(caffe2::serialize::PyTorchStreamReader& reader) : reader_(reader) {}

  /// pid = ('storage', storage type, key, location, numel).
  Item load(Unpickler& u, const std::vector<Item>& pid) {
    if (pid.size() != 5) {
      u.fail("persistent id must be ('storage', type, key, location, numel), got ", pid.size(),
             " fields");
    }
    const std::string tag = u.to_string(pid[0], "persistent id tag");
    if (tag != "storage") {
      u.fail("unsupported persistent id '", tag, "'");
    }
    const c10::ScalarType dtype = persistent_dtype(u, pid[1]);
    const std::string key = u.to_string(pid[2], "storage key");
    const int64_t numel = u.to_int(pid[4], "storage size");
    const auto found = storages_.find(key);
    if (found != storages_.end()) {
      if (found->second.scalar_type() != dtype || found->second.numel() != numel) {
        u.fail("storage '", key, "' is referenced as ", numel, " ", dtype, " and as ",
               found->second.numel(), " ", found->second.scalar_type());
      }
      return make_storage(found->second);
    }
    const std::string record = "data/" + key;
    bool present = false;
    at::DataPtr data;
    size_t nbytes = 0;
    try {
      present = reader_.hasRecord(record);
      if (present) {
        std::tie(data, nbytes) = reader_.getRecord(record);
      }
    } catch (const c10::Error& e) {
      u.fail("cannot read record '", record, "': ", e.what_without_backtrace());
    }
    if (!present) {
      u.fail("the archive has no record '", record, "' for storage '", key, "'");
    }
    const auto itemsize = static_cast<int64_t>(c10::elementSize(dtype));
    if (numel < 0 || nbytes % itemsize != 0 || static_cast<int64_t>(nbytes) / itemsize != numel) {
      u.fail("record '", record, "' has ", nbytes, " bytes, but storage '", key, "' holds ", numel,
             " ", dtype, " elements");
    }
    c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(data),
                         /*allocator=*/nullptr, /*resizable=*/false);
    auto elements = torch::empty({0}, torch::dtype(dtype));
    elements.set_(storage, 0, {numel}, {1});
    storages_.emplace(key, elements);
    return make_storage(elements);
  }

 private:
  caffe2::serialize::PyTorchStreamReader& reader_;
  std::unordered_map<std::string, torch::Tensor> storages_;
};

/// Storages of the legacy format: created empty when first referenced, filled
/// from the raw data after the storage key list.
class LegacyStorages {
 public:
  explicit LegacyStorages(size_t file_size) : file_size_(file_size) {}

  /// pid = ('storage', storage type, root key, location, numel, view_metadata)
  /// with view_metadata None or (view key, offset, size); or ('module', class,
  /// source file, source) for whole saved modules.
  Item load(Unpickler& u, const std::vector<Item>& pid) {
    if (pid.empty()) {
      u.fail("empty persistent id");
    }
    const std::string tag = u.to_string(pid[0], "persistent id tag");
    if (tag == "module" && pid.size() >= 2) {
      return pid[1];  // the module's class; its instances load as None
    }
    if (tag != "storage") {
      u.fail("unsupported persistent id '", tag, "'");
    }
    if (pid.size() != 6) {
      u.fail("persistent id must be ('storage', type, key, location, numel, view_metadata), got ",
             pid.size(), " fields");
    }
    const c10::ScalarType dtype = persistent_dtype(u, pid[1]);
    const std::string key = u.to_string(pid[2], "storage key");
    const int64_t numel = u.to_int(pid[4], "storage size");
    const auto itemsize = static_cast<int64_t>(c10::elementSize(dtype));
    if (numel < 0 || numel > static_cast<int64_t>(file_size_) / itemsize) {
      u.fail("storage '", key, "' of ", numel, " ", dtype, " elements cannot be in a file of ",
             file_size_, " bytes");
    }
    auto root = roots_.find(key);
    if (root == roots_.end()) {
      root = roots_.emplace(key, torch::empty({numel}, torch::dtype(dtype))).first;
    } else if (root->second.scalar_type() != dtype || root->second.numel() != numel) {
      u.fail("storage '", key, "' is referenced as ", numel, " ", dtype, " and as ",
             root->second.numel(), " ", root->second.scalar_type());
    }
    if (pid[5].special == nullptr && pid[5].value.isNone()) {
      return make_storage(root->second);
    }
    const std::vector<Item> view = u.fields(pid[5], "view_metadata");
    if (view.size() != 3) {
      u.fail("view_metadata must be (view key, offset, size), got ", view.size(), " fields");
    }
    const std::string view_key = u.to_string(view[0], "view key");
    const int64_t offset = u.to_int(view[1], "view offset");
    const int64_t size = u.to_int(view[2], "view size");
    if (offset < 0 || size < 0 || offset > numel || size > numel - offset) {
      u.fail("storage view '", view_key, "' of ", size, " elements at ", offset,
             " is outside storage '", key, "' of ", numel, " elements");
    }
    auto found = views_.find(view_key);
    if (found == views_.end()) {
      found = views_.emplace(view_key, root->second.narrow(0, offset, size)).first;
    }
    return make_storage(found->second);
  }

  /// Fills the storages from `data` at `pos`: for each key of the list, its
  /// element count (int64, little-endian) and its raw little-endian bytes.
  void read_data(std::string_view data, size_t pos, const c10::IValue& keys,
                 const std::string& where) const {
    TORCH_CHECK(keys.isList(), where, ": the storage key list (at offset ", pos, ") is a ",
                keys.tagKind(), ", not a list");
    std::unordered_set<std::string> filled;
    for (const auto& key_value : keys.toList().vec()) {
      TORCH_CHECK(key_value.isString(), where, ": storage key list holds a ", key_value.tagKind());
      const std::string& key = key_value.toStringRef();
      const auto root = roots_.find(key);
      TORCH_CHECK(root != roots_.end(), where, ": storage '", key,
                  "' is listed but no tensor uses it");
      TORCH_CHECK(data.size() - pos >= sizeof(int64_t), where,
                  ": truncated data: the element count of storage '", key, "' at offset ", pos,
                  " needs 8 bytes, ", data.size() - pos, " left");
      int64_t count = 0;
      std::memcpy(&count, data.data() + pos, sizeof(count));
      pos += sizeof(count);
      const torch::Tensor& elements = root->second;
      TORCH_CHECK(count == elements.numel(), where, ": storage '", key, "' at offset ",
                  pos - sizeof(count), " has ", count, " elements, its tensors expect ",
                  elements.numel());
      const size_t nbytes = elements.nbytes();
      TORCH_CHECK(data.size() - pos >= nbytes, where, ": truncated data: storage '", key,
                  "' at offset ", pos, " needs ", nbytes, " bytes, ", data.size() - pos, " left");
      if (nbytes > 0) {
        std::memcpy(elements.data_ptr(), data.data() + pos, nbytes);
      }
      pos += nbytes;
      filled.insert(key);
    }
    for (const auto& [key, elements] : roots_) {
      TORCH_CHECK(filled.count(key) != 0, where, ": storage '", key,
                  "' is used by a tensor but missing from the storage key list");
    }
  }

 private:
  size_t file_size_;
  std::unordered_map<std::string, torch::Tensor> roots_;
  std::unordered_map<std::string, torch::Tensor> views_;
};

// ---------------------------------------------------------------------------
// The two formats.

/// A bounds-checked reader over bytes in memory for PyTorchStreamReader
/// (caffe2's MemoryReadAdapter does not check the range it is asked for).
class BytesReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesReadAdapter(std::string_view bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) {
      return 0;
    }
    n = std::min<uint64_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string_view bytes_;
};

c10::IValue load_zip(const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& adapter,
                     const std::string& where) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  bool has_pickle = false;
  std::string byteorder = "little";
  at::DataPtr pickle;
  size_t pickle_size = 0;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(adapter);
    has_pickle = reader->hasRecord("data.pkl");
    if (reader->hasRecord("byteorder")) {  // written by torch >= 2.1
      const auto [order, order_size] = reader->getRecord("byteorder");
      byteorder.assign(static_cast<const char*>(order.get()), order_size);
    }
    if (has_pickle) {
      std::tie(pickle, pickle_size) = reader->getRecord("data.pkl");
    }
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, where,
                ": not a readable torch.save zip archive: ", e.what_without_backtrace());
  }
  TORCH_CHECK(has_pickle, where,
              ": the zip archive has no data.pkl record (not written by torch.save?)");
  TORCH_CHECK(byteorder == "little", where, ": unsupported byte order '", byteorder, "'");
  ZipStorages storages(*reader);
  Unpickler unpickler(std::string_view(static_cast<const char*>(pickle.get()), pickle_size),
                      where + ": data.pkl");
  unpickler.set_persistent_load(
      [&storages](Unpickler& u, const std::vector<Item>& pid) { return storages.load(u, pid); });
  const Item result = unpickler.load();
  return unpickler.value_of(result);
}

c10::IValue load_legacy(std::string_view data, const std::string& where) {
  TORCH_CHECK(!data.empty(), where, ": empty file, not written by torch.save");
  TORCH_CHECK(static_cast<uint8_t>(data[0]) == kProto, where,
              ": not written by torch.save: neither a zip archive nor a legacy torch.save file "
              "(which starts with a pickle protocol header)");
  Unpickler unpickler(data, where);
  const Item magic = unpickler.load();
  TORCH_CHECK(is_kind(magic, Special::Kind::kBigInt) && magic.special->bytes == kLegacyMagic, where,
              ": not written by torch.save: the first pickle is a ", describe(magic),
              ", not the legacy magic number");
  const Item version = unpickler.load();
  TORCH_CHECK(version.special == nullptr && version.value.isInt() &&
                  version.value.toInt() == kLegacyProtocolVersion,
              where, ": unsupported legacy torch.save protocol version (expected ",
              kLegacyProtocolVersion, ")");
  const c10::IValue sys_info = unpickler.value_of(unpickler.load());
  if (sys_info.isGenericDict()) {
    const auto dict = sys_info.toGenericDict();
    const auto little = dict.find(c10::IValue(std::string("little_endian")));
    TORCH_CHECK(little == dict.end() || !little->value().isBool() || little->value().toBool(),
                where, ": written on a big-endian machine, which is not supported");
  }
  LegacyStorages storages(data.size());
  unpickler.set_persistent_load(
      [&storages](Unpickler& u, const std::vector<Item>& pid) { return storages.load(u, pid); });
  c10::IValue result = unpickler.value_of(unpickler.load());
  unpickler.set_persistent_load(nullptr);
  const c10::IValue keys = unpickler.value_of(unpickler.load());
  storages.read_data(data, unpickler.position(), keys, where);
  return result;
}

bool is_zip(std::string_view head) {
  return head.substr(0, kZipMagic.size()) == kZipMagic;
}

/// Runs `load`, turning exceptions other than c10::Error into c10::Error.
template <typename F>
c10::IValue guarded(const std::string& where, F&& load) {
  try {
    return load();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, where, ": ", e.what());
  }
  return {};
}

}  // namespace

c10::IValue load_torch_file(const std::string& path) {
  const std::string where = "load_torch_file: '" + path + "'";
  return guarded(where, [&]() -> c10::IValue {
    std::ifstream in(path, std::ios::binary);
    TORCH_CHECK(in.is_open(), where, ": cannot open the file: ", std::strerror(errno));
    TORCH_CHECK(!std::filesystem::is_directory(path), where, ": is a folder, not a file");
    char head[4] = {};
    in.read(head, sizeof(head));
    if (is_zip(std::string_view(head, static_cast<size_t>(in.gcount())))) {
      in.close();
      std::shared_ptr<caffe2::serialize::ReadAdapterInterface> adapter;
      try {
        adapter = std::make_shared<caffe2::serialize::FileAdapter>(path);
      } catch (const c10::Error& e) {
        TORCH_CHECK(false, where, ": cannot open the file: ", e.what_without_backtrace());
      }
      return load_zip(adapter, where);
    }
    in.clear();
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    TORCH_CHECK(size >= 0, where, ": cannot read the file size");
    std::string bytes(static_cast<size_t>(size), '\0');
    in.seekg(0);
    in.read(bytes.data(), size);
    TORCH_CHECK(in.gcount() == size, where, ": cannot read the file: ", std::strerror(errno));
    return load_legacy(bytes, where);
  });
}

c10::IValue load_torch_bytes(const std::string& bytes, const std::string& what) {
  const std::string where = "load_torch_bytes: " + what;
  return guarded(where, [&]() -> c10::IValue {
    if (is_zip(bytes)) {
      return load_zip(std::make_shared<BytesReadAdapter>(bytes), where);
    }
    return load_legacy(bytes, where);
  });
}

StateDict load_state_dict(const std::string& path) {
  const std::string where = "load_state_dict: '" + path + "'";
  const c10::IValue root = load_torch_file(path);
  TORCH_CHECK(root.isGenericDict(), where, ": the file holds a ", root.tagKind(),
              ", not a state dict or a checkpoint dict");
  auto dict = root.toGenericDict();
  for (const char* entry : {"state_dict", "model"}) {
    const auto found = dict.find(c10::IValue(std::string(entry)));
    if (found != dict.end() && found->value().isGenericDict()) {
      dict = found->value().toGenericDict();
      break;
    }
  }
  StateDict state;
  for (const auto& entry : dict) {
    if (!entry.value().isTensor()) {
      continue;
    }
    TORCH_CHECK(entry.key().isString(), where, ": a tensor's key is a ", entry.key().tagKind(),
                ", not a string");
    std::string key = entry.key().toStringRef();
    constexpr std::string_view kDataParallel = "module.";
    if (key.compare(0, kDataParallel.size(), kDataParallel) == 0) {
      key.erase(0, kDataParallel.size());
    }
    TORCH_CHECK(!state.contains(key), where, ": two tensors are named '", key,
                "' once the 'module.' prefix is stripped");
    state.insert(key, entry.value().toTensor().detach());
  }
  TORCH_CHECK(!state.is_empty(), where,
              ": no tensor dict found (neither the file's dict nor its 'state_dict' or 'model' "
              "entry holds tensors)");
  return state;
}

void save_state_dict(const StateDict& state, const std::string& path) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& item : state) {
    const torch::Tensor& value = item.value();
    TORCH_CHECK(value.defined(), "save_state_dict: tensor '", item.key(), "' is undefined");
    TORCH_CHECK(value.layout() == torch::kStrided, "save_state_dict: tensor '", item.key(),
                "' has layout ", value.layout(), "; only dense tensors can be saved");
    auto tensor = value.detach().to(torch::kCPU).contiguous();
    // The pickler writes whole storages: give a slice of a larger storage its
    // own, so the file holds only this tensor's elements.
    if (tensor.storage_offset() != 0 ||
        tensor.storage().nbytes() != static_cast<size_t>(tensor.numel()) * tensor.element_size()) {
      tensor = tensor.clone();
    }
    dict.insert(item.key(), tensor);
  }
  // torch.save's zip layout (archive/data.pkl, archive/data/<key>, version,
  // byteorder), written with LibTorch's pickler. Not torch::pickle_save: it
  // wraps the dict in torch.jit._pickle.restore_type_tag, a global that
  // Python's torch.load refuses by default since torch 2.6
  // (weights_only=True). Without the tag the pickle holds only a plain dict,
  // tensors and their storages, which the weights-only unpickler accepts.
  std::vector<char> pickle;
  torch::jit::Pickler pickler(
      [&](const char* data, size_t size) { pickle.insert(pickle.end(), data, data + size); },
      /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();
  std::vector<char> bytes_written;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    const auto* begin = static_cast<const char*>(data);
    bytes_written.insert(bytes_written.end(), begin, begin + size);
    return size;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  // The pickler names storages "0", "1", ... in the order of tensorData().
  const auto& tensors = pickler.tensorData();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& storage = tensors[i].storage();
    writer.writeRecord("data/" + std::to_string(i), storage.data(), storage.nbytes());
  }
  writer.writeEndOfFile();
  write_file_atomically(
      path, std::string_view(static_cast<const char*>(bytes_written.data()), bytes_written.size()),
      "save_state_dict");
}

}  // namespace tandem::methods
