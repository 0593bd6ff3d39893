// search_fuzz.cpp: SEARCH programs (store/search) decoded from arbitrary bytes, validated, and run
// over a mailbox holding an arbitrary message: validate never recurses or crashes, a valid program
// gives ascending UIDs of stored messages, and NOT of it gives exactly the others.
//
// Input: u16 length of the program part (big-endian), the program part, then the message. The
// program part is a list of keys: a kind byte, then what that kind takes (below); byte 0xFE n(u16)
// opens n NOTs at once, so deep programs cost a few bytes; a string length byte 0xFF is followed
// by a u24 count and one byte repeated that often.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "store/mime/parser.hpp"
#include "store/search/evaluate.hpp"
#include "store/search/text.hpp"
#include "store/storage/schema.hpp"

namespace {

using store::search::Kind;
using store::search::Program;
using store::search::SearchKey;

constexpr int64_t kNow = 1700000000;
constexpr size_t kMaxMessage = 1 << 20;

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool done() const { return at_ >= in_.size(); }
  uint8_t u8() { return at_ < in_.size() ? static_cast<uint8_t>(in_[at_++]) : 0; }
  uint64_t number(size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | u8();
    return v;
  }
  std::string text() {
    size_t n = u8();
    if (n == 0xFF) {  // n copies of one byte: strings past the 64 KiB limit from a few input bytes
      n = number(3);
      return std::string(n, static_cast<char>(u8()));
    }
    n = std::min(n, in_.size() - std::min(at_, in_.size()));
    std::string s(in_.substr(at_, n));
    at_ += n;
    return s;
  }

 private:
  std::string_view in_;
  size_t at_ = 0;
};

Program decode(std::string_view bytes) {
  Program p;
  Reader r(bytes);
  while (!r.done() && p.size() <= store::search::kMaxKeys + 1) {
    const uint8_t code = r.u8();
    if (code == 0xFE) {
      const size_t n = r.number(2);
      for (size_t i = 0; i < n && p.size() <= store::search::kMaxKeys + 1; ++i) p.push_back(SearchKey{Kind::Not});
      continue;
    }
    SearchKey k;
    k.kind = static_cast<Kind>(code == 0xFF ? -1 : code % 40);  // 36..39 and -1: kinds validate refuses
    switch (k.kind) {
      case Kind::And: k.operands = r.u8() % 8; break;
      case Kind::Header:
        k.field = r.text();
        k.text = r.text();
        break;
      case Kind::Keyword: case Kind::Unkeyword: case Kind::Bcc: case Kind::Cc: case Kind::From: case Kind::To:
      case Kind::Subject: case Kind::Body: case Kind::Text:
        k.text = r.text();
        break;
      case Kind::Before: case Kind::On: case Kind::Since: case Kind::SentBefore: case Kind::SentOn:
      case Kind::SentSince:
        k.day = static_cast<int32_t>(r.number(4));
        break;
      case Kind::Larger: case Kind::Smaller: case Kind::ModSeq: case Kind::Older: case Kind::Younger:
        k.number = r.number(1 + r.u8() % 8);
        break;
      case Kind::Uid:
        for (size_t n = r.u8(); n > 0; --n) {
          k.uids.push_back({static_cast<uint32_t>(r.number(1)), static_cast<uint32_t>(r.number(1))});
        }
        break;
      default: break;
    }
    p.push_back(std::move(k));
  }
  return p;
}

// One environment for the whole run, two fixed messages committed; each input's message is
// added in a write transaction that is aborted afterwards, so nothing accumulates.
struct Mailbox {
  std::filesystem::path dir;
  common::lmdb::Env env;
  store::Dbs dbs;
  store::UserRecord user;
  uint64_t mailbox_id = 0;

  Mailbox() {
    char tmpl[] = "/tmp/search_fuzz.XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    dir = tmpl;
    common::lmdb::OpenOptions options;
    options.map_size = 256ull << 20;
    options.max_dbs = store::Dbs::kCount + 2;
    options.flags |= MDB_NOSYNC;
    auto e = common::lmdb::open_env(dir / "store", options);
    if (!e) std::abort();
    env = std::move(*e);
    auto txn = common::lmdb::Txn::begin(env.get(), true);
    if (!txn) std::abort();
    auto d = store::Dbs::open(*txn);
    if (!d) std::abort();
    dbs = *d;
    auto u = store::create_user(*txn, dbs, "fuzz@example.com", kNow);
    if (!u) std::abort();
    user = *u;
    auto box = store::find_mailbox(*txn, dbs, user.id, "INBOX");
    if (!box || !*box) std::abort();
    mailbox_id = (*box)->id;
    for (std::string_view m : {std::string_view("Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b\r\n\r\nplain body\r\n"),
                               std::string_view("Content-Type: text/plain; charset=koi8-r\r\n"
                                                "Content-Transfer-Encoding: base64\r\n\r\n8PLp9+X0\r\n")}) {
      if (!add(*txn, m, store::kSeen)) std::abort();
    }
    if (!txn->commit()) std::abort();
  }
  ~Mailbox() {
    std::error_code ec;
    env.reset();
    std::filesystem::remove_all(dir, ec);
  }

  bool add(common::lmdb::Txn& txn, std::string_view body, uint32_t flags) {
    auto id = store::put_body(txn, dbs, body, store::mime::encode(store::mime::parse(body)));
    if (!id) return false;
    store::MessageRecord record;
    record.internal_date = kNow - 86400;
    record.flags = flags;
    record.prefix = "Delivered-To: fuzz@example.com\r\n";
    record.keywords = {"$Junk"};
    return static_cast<bool>(store::add_message(txn, dbs, "fuzz@example.com", user, "INBOX", *id, body.size(), record));
  }
};

Mailbox& mailbox() {
  static Mailbox m;
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t program_size = size >= 2 ? (size_t{data[0]} << 8 | data[1]) : 0;
  const std::string_view program_bytes = in.substr(std::min<size_t>(2, size)).substr(0, program_size);
  std::string_view message = in.substr(std::min(size, 2 + program_bytes.size()));
  message = message.substr(0, kMaxMessage);

  // The text helpers on the message's bytes as if they were a header value, a body, a date.
  store::search::Charsets charsets;
  (void)store::search::fold(store::search::decode_header_value(message.substr(0, 4096), charsets));
  (void)store::search::parse_date_day(message.substr(0, 256));
  (void)store::search::decode_quoted_printable(message.substr(0, 4096));

  const Program program = decode(program_bytes);
  const bool valid = static_cast<bool>(store::search::validate(program));

  Mailbox& box = mailbox();
  auto txn = common::lmdb::Txn::begin(box.env.get(), true);
  if (!txn) std::abort();
  const store::UserRecord saved_user = box.user;  // add_message counts into it; the abort below undoes that
  if (!box.add(*txn, message, message.empty() ? 0 : static_cast<uint8_t>(message[0]) % 32)) std::abort();

  auto result = store::search::evaluate(*txn, box.dbs, box.mailbox_id, program, kNow);
  if (static_cast<bool>(result) != valid) {
    // The only other failure is a damaged store, and this one is whole.
    std::abort();
  }
  if (result) {
    const std::vector<uint32_t>& uids = result->uids;
    for (size_t i = 0; i < uids.size(); ++i) {
      if (uids[i] < 1 || uids[i] > 3 || (i > 0 && uids[i] <= uids[i - 1])) std::abort();
    }
    Program negated{SearchKey{Kind::Not}};
    negated.insert(negated.end(), program.begin(), program.end());
    if (program.empty()) negated.push_back(SearchKey{Kind::All});
    if (store::search::validate(negated)) {
      auto other = store::search::evaluate(*txn, box.dbs, box.mailbox_id, negated, kNow);
      if (!other) std::abort();
      std::vector<uint32_t> both = uids;
      both.insert(both.end(), other->uids.begin(), other->uids.end());
      std::sort(both.begin(), both.end());
      if (both != std::vector<uint32_t>{1, 2, 3}) std::abort();
    }
  }
  txn->abort();
  box.user = saved_user;
  return 0;
}
