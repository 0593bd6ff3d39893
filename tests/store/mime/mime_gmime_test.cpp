// mime_gmime_test.cpp: our MIME structure against gmime (a test oracle only, never linked into the
// store) on messages this test generates from a fixed seed: the part tree, media types,
// parameters, encodings, body bytes and the envelope must agree wherever IMAP and gmime mean the
// same thing.
//
// Where the semantics differ on purpose, the test compares what should agree and says why:
// - text/* without a charset: BODYSTRUCTURE carries ("charset" "us-ascii") (RFC 2045 §5.2, as
//   Dovecot serves it); gmime reports no parameter.
// - RFC 2231 extended values: BODYSTRUCTURE keeps them percent-encoded under "name*" (clients
//   decode them); gmime decodes them into UTF-8 under "name". We decode ours to compare.
// - RFC 2047 words in Subject and display names stay encoded in ENVELOPE (RFC 3501 §7.4.2);
//   gmime decodes them. We decode ours with gmime's own decoder to compare.
// - Message-ID: ENVELOPE keeps the angle brackets, gmime strips them.
// - A multipart with no boundary, or whose delimiter never comes, has no children in both; our
//   BODYSTRUCTURE then shows an empty text/plain stand-in (RFC 3501's grammar needs one body).
#include <catch2/catch.hpp>

#include <gmime/gmime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "store/mime/parser.hpp"
#include "store/mime/structure.hpp"

using namespace store::mime;

namespace {

// ---- A reader for the IMAP strings we produce (RFC 3501 §4: NIL, numbers, quoted, literals, lists).
struct Node {
  enum Kind { Nil, Atom, Str, List } kind = Nil;
  std::string text;
  std::vector<Node> items;
  bool is_list() const { return kind == List; }
  bool is_nil() const { return kind == Nil; }
};

bool read_node(std::string_view in, size_t& i, Node& out) {
  if (i >= in.size()) return false;
  char c = in[i];
  if (c == '(') {
    ++i;
    out.kind = Node::List;
    while (i < in.size() && in[i] != ')') {
      if (in[i] == ' ') {
        ++i;
        continue;
      }
      Node child;
      if (!read_node(in, i, child)) return false;
      out.items.push_back(std::move(child));
    }
    if (i >= in.size()) return false;
    ++i;
    return true;
  }
  if (c == '"') {
    ++i;
    out.kind = Node::Str;
    while (i < in.size() && in[i] != '"') {
      if (in[i] == '\\') ++i;
      if (i >= in.size()) return false;
      out.text += in[i++];
    }
    if (i >= in.size()) return false;
    ++i;
    return true;
  }
  if (c == '{') {
    size_t close = in.find('}', i);
    if (close == std::string_view::npos || close + 2 >= in.size() + 1) return false;
    size_t n = std::stoul(std::string(in.substr(i + 1, close - i - 1)));
    if (in.substr(close + 1, 2) != "\r\n" || close + 3 + n > in.size()) return false;
    out.kind = Node::Str;
    out.text = std::string(in.substr(close + 3, n));
    i = close + 3 + n;
    return true;
  }
  size_t start = i;
  while (i < in.size() && in[i] != ' ' && in[i] != ')' && in[i] != '(') ++i;
  std::string_view atom = in.substr(start, i - start);
  if (atom.empty()) return false;
  if (atom == "NIL") {
    out.kind = Node::Nil;
  } else {
    out.kind = Node::Atom;
    out.text = std::string(atom);
  }
  return true;
}

Node read_all(std::string_view in) {
  Node n;
  size_t i = 0;
  REQUIRE(read_node(in, i, n));
  REQUIRE(i == in.size());
  return n;
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string percent_decode(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size()) {
      out += static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

// ---- The generator: seeded, so every run checks the same messages.
class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool chance(int percent) { return pick(100) < percent; }

  std::string word() {
    static const char* kWords[] = {"alpha", "report", "meeting", "budget", "hello", "draft", "minutes",
                                   "status", "update", "photo", "lunch", "review", "plan", "notes"};
    return kWords[pick(14)];
  }
  std::string words(int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += (i ? " " : "") + word();
    return out;
  }
  std::string addr() {
    static const char* kDomains[] = {"example.com", "example.org", "mail.example.net", "b.example"};
    std::string local = word();
    if (chance(30)) local += "." + word();
    if (chance(20)) local += std::to_string(pick(100));
    return local + "@" + kDomains[pick(4)];
  }
  std::string base64(std::string_view in) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
      uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
      out += k[v >> 18];
      out += k[(v >> 12) & 63];
      out += k[(v >> 6) & 63];
      out += k[v & 63];
    }
    if (i + 1 == in.size()) {
      uint32_t v = uint8_t(in[i]) << 16;
      out += k[v >> 18];
      out += k[(v >> 12) & 63];
      out += "==";
    } else if (i + 2 == in.size()) {
      uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
      out += k[v >> 18];
      out += k[(v >> 12) & 63];
      out += k[(v >> 6) & 63];
      out += '=';
    }
    return out;
  }
  std::string display_name() {
    switch (pick(5)) {
      case 0: return word() + " " + word();
      case 1: return "\"" + word() + ", " + word() + "\"";
      case 2: return "=?utf-8?b?" + base64("J\xC3\xB6rg " + word()) + "?=";
      case 3: return "=?iso-8859-1?q?Fran=E7ois?= " + word();
      default: return word() + " Q. " + word();
    }
  }
  std::string mailbox() {
    switch (pick(4)) {
      case 0: return addr();
      case 1: return addr() + " (" + word() + " " + word() + ")";
      default: return display_name() + " <" + addr() + ">";
    }
  }
  std::string address_list(bool groups) {
    std::string out;
    int n = 1 + pick(chance(10) ? 30 : 3);  // sometimes a long list, folded below
    for (int i = 0; i < n; ++i) {
      if (i) out += ", ";
      if (groups && chance(15)) {
        out += word() + " team: ";
        int m = pick(3);
        for (int j = 0; j < m; ++j) out += (j ? ", " : "") + mailbox();
        out += ";";
      } else {
        out += mailbox();
      }
    }
    return out;
  }
  std::string subject() {
    switch (pick(6)) {
      case 0: return "=?utf-8?b?" + base64("Gr\xC3\xBC\xC3\x9F" "e " + word()) + "?= " + word();
      case 1: return "Caf\xC3\xA9 " + word();  // raw UTF-8 (RFC 6532)
      case 2: return words(30 + pick(20));     // long, folded
      case 3: return "Re: [" + word() + "] " + words(3);
      default: return words(1 + pick(5));
    }
  }
  // RFC 5322 §2.2.3: fold at white space so no line passes 78 characters.
  static std::string fold(const std::string& line) {
    std::string out;
    size_t col = 0;
    size_t i = 0;
    while (i < line.size()) {
      size_t sp = line.find(' ', i + 1);
      std::string_view piece(line.data() + i, (sp == std::string::npos ? line.size() : sp) - i);
      if (col + piece.size() > 76 && col > 0 && piece[0] == ' ') {
        out += "\n";
        col = 0;
      }
      out += piece;
      col += piece.size();
      i += piece.size();
    }
    return out + "\n";
  }
  std::string text_body(bool eightbit) {
    std::string out;
    int lines = pick(12);
    for (int i = 0; i < lines; ++i) {
      out += words(1 + pick(10));
      if (eightbit && chance(40)) out += " \xC3\xA9t\xC3\xA9 \xE2\x82\xAC";
      out += "\n";
      if (chance(15)) out += "\n";
    }
    if (chance(50)) out += words(2);  // no line break before the delimiter's
    return out;
  }
  std::string boundary() {
    std::string b = "=_" + std::to_string(++counter_) + "_" + word();
    if (chance(20)) b = "----=_NextPart_" + std::to_string(counter_) + "." + std::to_string(pick(100000));
    return b;
  }
  std::string quoted_boundary(const std::string& b) { return "\"" + b + "\""; }
  std::string filename_params(const std::string& attr) {
    std::string name = word() + "-" + word() + ".bin";
    switch (pick(4)) {
      case 0: return "; " + attr + "=\"" + name + "\"";
      case 1: return "; " + attr + "*0=\"" + name.substr(0, 4) + "\"; " + attr + "*1=\"" + name.substr(4) + "\"";
      case 2: return "; " + attr + "*=utf-8''%E2%82%AC" + name;
      default: return "; " + attr + "*0*=utf-8''%E2%82%AC; " + attr + "*1=\"" + name + "\"";
    }
  }

  // One MIME entity: its Content-* header lines and its body.
  struct Entity {
    std::string headers;
    std::string body;
  };
  Entity entity(int depth) {
    int kind = depth >= 4 ? pick(3) : pick(10);
    Entity e;
    switch (kind) {
      case 0: {
        bool eightbit = chance(40);
        if (chance(70)) {
          e.headers += std::string("Content-Type: text/plain") + (chance(60) ? "; charset=utf-8" : "") + "\n";
        }
        if (eightbit) e.headers += "Content-Transfer-Encoding: 8bit\n";
        e.body = text_body(eightbit);
        break;
      }
      case 1: {
        e.headers += "Content-Type: text/html; charset=\"us-ascii\"\nContent-Transfer-Encoding: quoted-printable\n";
        e.body = "<p>" + words(4) + "=3D</p>\n<p>" + words(3) + "</p>\n";
        break;
      }
      case 2: {
        e.headers += "Content-Type: application/octet-stream" + filename_params("name") + "\n";
        e.headers += "Content-Transfer-Encoding: base64\n";
        e.headers += "Content-Disposition: attachment" + filename_params("filename") + "\n";
        std::string raw;
        int n = pick(300);
        for (int i = 0; i < n; ++i) raw += static_cast<char>(pick(256));
        std::string b64 = base64(raw);
        for (size_t i = 0; i < b64.size(); i += 76) e.body += b64.substr(i, 76) + "\n";
        break;
      }
      case 3: case 4: case 5: case 6: {
        const char* sub = kind == 3 ? "alternative" : (kind == 4 ? "related" : "mixed");
        std::string b = boundary();
        bool no_boundary = chance(4);
        bool no_close = chance(8);
        e.headers += std::string("Content-Type: multipart/") + sub;
        if (!no_boundary) e.headers += std::string(";") + (chance(50) ? "\n " : " ") + "boundary=" + quoted_boundary(b);
        e.headers += "\n";
        if (chance(40)) e.body += "This is a multi-part message in MIME format.\n";
        int n = 1 + pick(4);
        for (int i = 0; i < n; ++i) {
          Entity c = entity(depth + 1);
          e.body += "--" + b + (chance(10) ? "  " : "") + "\n" + c.headers + "\n" + c.body;
          if (!c.body.empty() && c.body.back() != '\n') e.body += "\n";
          else if (chance(50)) e.body += "\n";
        }
        if (!no_close) {
          e.body += "--" + b + "--\n";
          if (chance(30)) e.body += "epilogue " + word() + "\n";
        }
        break;
      }
      default: {
        e.headers += "Content-Type: message/rfc822\n";
        if (chance(30)) e.headers += "Content-Disposition: inline\n";
        e.body = message(depth + 1);
        break;
      }
    }
    return e;
  }
  std::string message(int depth) {
    std::string h;
    h += fold("From: " + mailbox());
    if (chance(30)) h += fold("Sender: " + mailbox());
    if (chance(30)) h += fold("Reply-To: " + address_list(false));
    // One To: only (RFC 5322 §3.6): gmime merges repeated fields, IMAP's ENVELOPE takes the first.
    h += chance(10) ? std::string("To: undisclosed-recipients:;\n") : fold("To: " + address_list(true));
    if (chance(40)) h += fold("Cc: " + address_list(true));
    h += fold("Subject: " + subject());
    h += "Date: Mon, " + std::to_string(1 + pick(28)) + " Jan 2024 10:" + std::to_string(10 + pick(50)) + ":00 +0100\n";
    h += "Message-ID: <" + std::to_string(++counter_) + "." + word() + "@example.com>\n";
    if (chance(30)) h += "In-Reply-To: <" + word() + "@example.org>\n";
    h += "MIME-Version: 1.0\n";
    if (chance(20)) h += fold("X-Long: " + words(40));
    Entity e = entity(depth);
    return h + e.headers + "\n" + e.body;
  }

 private:
  std::mt19937 rng_;
  uint32_t counter_ = 0;
};

std::string crlf(std::string_view lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

// gmime leaves folding line breaks inside display names; RFC 5322 §2.2.3 unfolds them.
std::string unfolded(const char* name) {
  std::string out;
  for (const char* p = name ? name : ""; *p; ++p) {
    if (*p != '\r' && *p != '\n') out += *p;
  }
  return out;
}

// ---- The comparison.
struct Compare {
  std::string_view msg;
  const MessageStructure& s;
  std::vector<std::string> problems;
  size_t leaves = 0, messages = 0, multiparts = 0, addresses = 0, params = 0;

  void fail(const std::string& what) { problems.push_back(what); }

  // Our parameter list (BODYSTRUCTURE) against gmime's, with RFC 2231 values decoded.
  void compare_params(const Node& ours, GMimeParamList* theirs, bool is_text, const std::string& where) {
    std::vector<std::pair<std::string, std::string>> mine;
    if (ours.is_list()) {
      for (size_t i = 0; i + 1 < ours.items.size(); i += 2) {
        std::string name = ours.items[i].text, value = ours.items[i + 1].text;
        if (!name.empty() && name.back() == '*') {
          name.pop_back();
          size_t q1 = value.find('\''), q2 = q1 == std::string::npos ? q1 : value.find('\'', q1 + 1);
          if (q2 != std::string::npos) value = percent_decode(value.substr(q2 + 1));
        }
        mine.emplace_back(name, value);
      }
    }
    int n = theirs ? g_mime_param_list_length(theirs) : 0;
    for (int i = 0; i < n; ++i) {
      GMimeParam* p = g_mime_param_list_get_parameter_at(theirs, i);
      std::string name = lower(g_mime_param_get_name(p));
      std::string value = g_mime_param_get_value(p) ? g_mime_param_get_value(p) : "";
      auto it = std::find_if(mine.begin(), mine.end(), [&](auto& m) { return m.first == name; });
      if (it == mine.end()) {
        fail(where + ": gmime has parameter " + name + " we do not");
      } else if (it->second != value) {
        fail(where + ": parameter " + name + " is '" + it->second + "', gmime '" + value + "'");
      } else {
        ++params;
      }
      if (it != mine.end()) mine.erase(it);
    }
    for (auto& [name, value] : mine) {
      if (is_text && name == "charset" && value == "us-ascii") continue;  // our RFC 2045 default
      fail(where + ": we have parameter " + name + " gmime does not");
    }
  }

  void compare_type(const Node& type, const Node& subtype, GMimeObject* g, const std::string& where) {
    GMimeContentType* ct = g_mime_object_get_content_type(g);
    std::string gt = lower(g_mime_content_type_get_media_type(ct));
    std::string gs = lower(g_mime_content_type_get_media_subtype(ct));
    if (lower(type.text) != gt || lower(subtype.text) != gs) {
      fail(where + ": type " + type.text + "/" + subtype.text + ", gmime " + gt + "/" + gs);
    }
  }

  void compare_disposition(const Node& disp, GMimeObject* g, const std::string& where) {
    GMimeContentDisposition* d = g_mime_object_get_content_disposition(g);
    if (!d) {
      if (!disp.is_nil()) fail(where + ": we have a disposition, gmime none");
      return;
    }
    if (!disp.is_list() || disp.items.size() != 2) {
      fail(where + ": gmime has a disposition, we none");
      return;
    }
    if (lower(disp.items[0].text) != lower(g_mime_content_disposition_get_disposition(d))) {
      fail(where + ": disposition differs");
    }
    compare_params(disp.items[1], g_mime_content_disposition_get_parameters(d), false, where + " disposition");
  }

  void compare_part(uint32_t index, const Node& bs, GMimeObject* g, const std::string& where) {
    const Part& p = s.parts[index];
    if (!bs.is_list() || bs.items.empty()) {
      fail(where + ": BODYSTRUCTURE is not a list");
      return;
    }
    if (p.kind == PartKind::Multipart) {
      ++multiparts;
      if (!GMIME_IS_MULTIPART(g)) {
        fail(where + ": multipart for us, not for gmime");
        return;
      }
      size_t n = 0;
      while (n < bs.items.size() && bs.items[n].is_list()) ++n;
      if (n + 1 >= bs.items.size()) {
        fail(where + ": multipart BODYSTRUCTURE without subtype and parameters");
        return;
      }
      compare_type(Node{Node::Str, "multipart", {}}, bs.items[n], g, where);
      compare_params(bs.items[n + 1], g_mime_content_type_get_parameters(g_mime_object_get_content_type(g)), false,
                     where);
      int count = g_mime_multipart_get_count(GMIME_MULTIPART(g));
      std::vector<uint32_t> kids;
      for (uint32_t c = p.first_child; c != kNoPart; c = s.parts[c].next_sibling) kids.push_back(c);
      if (static_cast<int>(kids.size()) != count) {
        fail(where + ": " + std::to_string(kids.size()) + " parts, gmime " + std::to_string(count));
        return;
      }
      if (kids.empty() && n != 1) fail(where + ": empty multipart without its stand-in body");
      for (size_t i = 0; i < kids.size(); ++i) {
        compare_part(kids[i], bs.items[i], g_mime_multipart_get_part(GMIME_MULTIPART(g), static_cast<int>(i)),
                     where + "." + std::to_string(i + 1));
      }
      return;
    }
    // type subtype params id description encoding size ...
    if (bs.items.size() < 7) {
      fail(where + ": single-part BODYSTRUCTURE too short");
      return;
    }
    compare_type(bs.items[0], bs.items[1], g, where);
    bool is_text = lower(bs.items[0].text) == "text";
    compare_params(bs.items[2], g_mime_content_type_get_parameters(g_mime_object_get_content_type(g)), is_text,
                   where);
    if (bs.items[6].text != std::to_string(p.body_size())) fail(where + ": size in BODYSTRUCTURE is not the part's");
    std::string_view body = msg.substr(p.body_start, p.body_size());
    if (p.kind == PartKind::Message) {
      ++messages;
      if (!GMIME_IS_MESSAGE_PART(g)) {
        fail(where + ": message/rfc822 for us, not for gmime");
        return;
      }
      if (bs.items.size() < 10 || p.first_child == kNoPart) {
        fail(where + ": message/rfc822 BODYSTRUCTURE too short");
        return;
      }
      if (bs.items[9].text != std::to_string(p.body_lines)) fail(where + ": lines");
      if (bs.items.size() > 11) compare_disposition(bs.items[11], g, where);
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(g));
      compare_message(p.first_child, bs.items[7], bs.items[8], inner, where);
      return;
    }
    ++leaves;
    if (!GMIME_IS_PART(g)) {
      fail(where + ": a leaf for us, not for gmime");
      return;
    }
    GMimePart* gp = GMIME_PART(g);
    const char* enc = g_mime_content_encoding_to_string(g_mime_part_get_content_encoding(gp));
    if (enc && lower(bs.items[5].text) != lower(enc)) fail(where + ": encoding " + bs.items[5].text + ", gmime " + enc);
    if (is_text) {
      size_t lf = static_cast<size_t>(std::count(body.begin(), body.end(), '\n'));
      if (bs.items.size() < 8 || bs.items[7].text != std::to_string(lf)) fail(where + ": text lines");
      if (bs.items.size() > 9) compare_disposition(bs.items[9], g, where);
    } else if (bs.items.size() > 8) {
      compare_disposition(bs.items[8], g, where);
    }
    // The body bytes: gmime keeps the part's content as a window on the parsed stream.
    GMimeDataWrapper* w = g_mime_part_get_content(gp);
    GMimeStream* st = w ? g_mime_data_wrapper_get_stream(w) : nullptr;
    if (!st) {
      if (!body.empty()) fail(where + ": gmime has no content, we have " + std::to_string(body.size()) + " bytes");
      return;
    }
    gint64 start = st->bound_start, end = st->bound_end;
    if (end < 0) end = static_cast<gint64>(msg.size());
    if (static_cast<uint64_t>(start) != p.body_start || static_cast<uint64_t>(end) != p.body_end) {
      fail(where + ": body [" + std::to_string(p.body_start) + "," + std::to_string(p.body_end) + "), gmime [" +
           std::to_string(start) + "," + std::to_string(end) + ")");
    }
  }

  // Our ENVELOPE address list against gmime's, groups flattened as RFC 3501 brackets them.
  void compare_addresses(const Node& ours, InternetAddressList* theirs, const std::string& where) {
    std::vector<const Node*> mine;
    if (ours.is_list()) {
      for (auto& a : ours.items) mine.push_back(&a);
    }
    size_t at = 0;
    auto next = [&]() -> const Node* { return at < mine.size() ? mine[at++] : nullptr; };
    std::function<void(InternetAddressList*)> walk = [&](InternetAddressList* list) {
      int n = list ? internet_address_list_length(list) : 0;
      for (int i = 0; i < n; ++i) {
        InternetAddress* ia = internet_address_list_get_address(list, i);
        const Node* a = next();
        if (!a || !a->is_list() || a->items.size() != 4) {
          fail(where + ": fewer addresses than gmime");
          return;
        }
        ++addresses;
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
          if (!a->items[3].is_nil()) fail(where + ": gmime has a group, we a mailbox");
          std::string gname = unfolded(internet_address_get_name(ia));
          if (a->items[2].text != gname) fail(where + ": group name '" + a->items[2].text + "', gmime '" + gname + "'");
          walk(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)));
          const Node* end = next();
          if (!end || !end->items[2].is_nil()) fail(where + ": group not closed");
          continue;
        }
        std::string addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
        size_t atpos = addr.rfind('@');
        std::string local = atpos == std::string::npos ? addr : addr.substr(0, atpos);
        std::string host = atpos == std::string::npos ? "" : addr.substr(atpos + 1);
        if (a->items[2].text != local || a->items[3].text != host) {
          fail(where + ": mailbox " + a->items[2].text + "@" + a->items[3].text + ", gmime " + addr);
        }
        std::string gname = unfolded(internet_address_get_name(ia));
        std::string mine_name;
        if (!a->items[0].is_nil()) {
          char* decoded = g_mime_utils_header_decode_phrase(nullptr, a->items[0].text.c_str());
          mine_name = decoded ? decoded : "";
          g_free(decoded);
        }
        if (mine_name != gname) {
          fail(where + ": name '" + mine_name + "', gmime '" + gname + "'");
        }
      }
    };
    walk(theirs);
    if (at != mine.size()) fail(where + ": more addresses than gmime");
  }

  std::string raw_header(GMimeObject* g, const char* name) {
    GMimeHeader* h = g_mime_header_list_get_header(g_mime_object_get_header_list(g), name);
    if (!h) return "";
    std::string v;
    for (const char* p = g_mime_header_get_raw_value(h); *p; ++p) {
      if (*p != '\r' && *p != '\n') v += *p;
    }
    size_t a = v.find_first_not_of(" \t"), b = v.find_last_not_of(" \t");
    return a == std::string::npos ? "" : v.substr(a, b - a + 1);
  }

  void compare_message(uint32_t index, const Node& env, const Node& bs, GMimeMessage* gm, const std::string& where) {
    if (!gm) {
      fail(where + ": gmime has no message");
      return;
    }
    if (!env.is_list() || env.items.size() != 10) {
      fail(where + ": ENVELOPE is not 10 items");
      return;
    }
    const char* subject = g_mime_message_get_subject(gm);
    if (env.items[1].is_nil() != (subject == nullptr)) {
      fail(where + ": subject presence");
    } else if (subject) {
      char* decoded = g_mime_utils_header_decode_text(nullptr, env.items[1].text.c_str());
      if (std::string(decoded) != subject) fail(where + ": subject '" + decoded + "', gmime '" + subject + "'");
      g_free(decoded);
    }
    const char* id = g_mime_message_get_message_id(gm);
    if (id && env.items[9].text != "<" + std::string(id) + ">") fail(where + ": message-id");
    if (!env.items[0].is_nil() && env.items[0].text != raw_header(GMIME_OBJECT(gm), "Date")) fail(where + ": date");
    compare_addresses(env.items[2], g_mime_message_get_from(gm), where + " from");
    compare_addresses(env.items[5], g_mime_message_get_addresses(gm, GMIME_ADDRESS_TYPE_TO), where + " to");
    compare_addresses(env.items[6], g_mime_message_get_addresses(gm, GMIME_ADDRESS_TYPE_CC), where + " cc");
    if (g_mime_message_get_addresses(gm, GMIME_ADDRESS_TYPE_SENDER) &&
        internet_address_list_length(g_mime_message_get_addresses(gm, GMIME_ADDRESS_TYPE_SENDER)) > 0) {
      compare_addresses(env.items[3], g_mime_message_get_addresses(gm, GMIME_ADDRESS_TYPE_SENDER), where + " sender");
    }
    GMimeObject* body = g_mime_message_get_mime_part(gm);
    if (!body) {
      fail(where + ": gmime has no body part");
      return;
    }
    compare_part(index, bs, body, where);
  }
};

struct GMimeLibrary {
  GMimeLibrary() { g_mime_init(); }
  ~GMimeLibrary() { g_mime_shutdown(); }
};

}  // namespace

TEST_CASE("gmime agrees on 240 generated messages") {
  GMimeLibrary lib;
  Generator gen(20240614);
  size_t leaves = 0, messages = 0, multiparts = 0, addresses = 0, params = 0, broken = 0;
  for (int i = 0; i < 240; ++i) {
    std::string lf = gen.message(0);
    std::string m = i % 10 == 9 ? lf : crlf(lf);  // every tenth message with bare LF line ends

    MessageStructure ours = parse(m);
    if (ours.anomalies & (kAnomalyNoBoundary | kAnomalyUnterminatedMultipart)) ++broken;
    Parser split;
    for (size_t at = 0; at < m.size(); at += 13) split.feed(std::string_view(m).substr(at, 13));
    REQUIRE(split.finish() == ours);

    GMimeStream* stream = g_mime_stream_mem_new_with_buffer(m.data(), m.size());
    GMimeParser* parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_persist_stream(parser, TRUE);
    GMimeMessage* gm = g_mime_parser_construct_message(parser, nullptr);
    REQUIRE(gm);

    Compare c{m, ours};
    c.compare_message(0, read_all(ours.envelope), read_all(ours.bodystructure), gm, "message " + std::to_string(i));
    read_all(ours.body);  // BODY parses as IMAP too
    if (!c.problems.empty()) {
      std::string all;
      for (auto& p : c.problems) all += p + "\n";
      INFO(all << "---- message " << i << " ----\n" << m);
      CHECK(c.problems.empty());
    }
    leaves += c.leaves;
    messages += c.messages;
    multiparts += c.multiparts;
    addresses += c.addresses;
    params += c.params;
    g_object_unref(gm);
    g_object_unref(parser);
    g_object_unref(stream);
  }
  // The corpus exercises what it claims to: enough of each kind compared.
  CHECK(leaves > 400);
  CHECK(messages > 40);
  CHECK(multiparts > 100);
  CHECK(addresses > 500);
  CHECK(params > 300);
  CHECK(broken > 10);
  std::printf("compared %zu leaves, %zu rfc822, %zu multiparts, %zu addresses, %zu params; %zu broken\n", leaves,
              messages, multiparts, addresses, params, broken);
}
