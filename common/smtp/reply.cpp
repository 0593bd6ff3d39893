// reply.cpp: rendering and reading SMTP replies (RFC 5321 §4.2, RFC 3463, RFC 2034).
#include "common/smtp/reply.hpp"

#include <charconv>

#include "common/ascii.hpp"

namespace common::smtp {

std::string EnhancedCode::str() const {
  if (!present()) return {};
  return std::to_string(klass) + "." + std::to_string(subject) + "." + std::to_string(detail);
}

std::string sanitize(std::string_view text, size_t max) {
  std::string out;
  const bool cut = text.size() > max;
  if (cut) text = text.substr(0, max);
  out.reserve(text.size() + 3);
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (cut) out += "...";
  return out;
}

namespace {

void append_line(std::string& out, int code, EnhancedCode enh, bool last, std::string_view text) {
  std::string head = std::to_string(code);
  head += last ? ' ' : '-';
  if (enh.present()) {
    head += enh.str();
    if (!text.empty()) head += ' ';
  }
  // Room left in a 512-octet line for the text, after the head and CRLF.
  const size_t room = kMaxReplyLine - 2 - head.size();
  out += head;
  // Reply text is ours or sanitized client text; sanitize again so no caller can inject CRLF.
  out += sanitize(text.substr(0, room), room);
  out += "\r\n";
}

}  // namespace

std::string render_reply(int code, EnhancedCode enh, std::span<const std::string_view> lines) {
  std::string out;
  if (lines.empty()) {
    append_line(out, code, enh, true, {});
    return out;
  }
  for (size_t i = 0; i < lines.size(); ++i) append_line(out, code, enh, i + 1 == lines.size(), lines[i]);
  return out;
}

std::string render_reply(int code, EnhancedCode enh, std::string_view text) {
  std::string_view one[1] = {text};
  return render_reply(code, enh, std::span<const std::string_view>(one));
}

std::string render_reply(const SmtpError& err) { return render_reply(err.code, err.enhanced, err.text); }

std::string render_ehlo(const Capabilities& caps) {
  std::vector<std::string> lines;
  std::string first = sanitize(caps.domain, 255);
  if (!caps.greeting.empty()) first += " " + caps.greeting;
  lines.push_back(std::move(first));
  if (caps.pipelining) lines.emplace_back("PIPELINING");
  if (caps.size) lines.push_back(*caps.size ? "SIZE " + std::to_string(*caps.size) : std::string("SIZE"));
  if (caps.eightbitmime) lines.emplace_back("8BITMIME");
  if (caps.binarymime) lines.emplace_back("BINARYMIME");
  if (caps.chunking) lines.emplace_back("CHUNKING");
  if (caps.smtputf8) lines.emplace_back("SMTPUTF8");
  if (caps.dsn) lines.emplace_back("DSN");
  if (caps.enhancedstatuscodes) lines.emplace_back("ENHANCEDSTATUSCODES");
  if (caps.starttls) lines.emplace_back("STARTTLS");
  if (!caps.auth.empty()) {
    std::string auth = "AUTH";
    for (auto& m : caps.auth) auth += " " + m;
    lines.push_back(std::move(auth));
  }
  if (caps.xid) lines.emplace_back("XID");
  for (auto& e : caps.extra) lines.push_back(e);
  std::vector<std::string_view> views(lines.begin(), lines.end());
  return render_reply(250, {}, views);
}

std::optional<std::pair<EnhancedCode, size_t>> parse_enhanced(std::string_view text) {
  // class "." subject "." detail (RFC 3463 §2): class one digit 2/4/5, the others 1-3 digits.
  if (text.size() < 5) return std::nullopt;
  if (text[0] != '2' && text[0] != '4' && text[0] != '5') return std::nullopt;
  if (text[1] != '.') return std::nullopt;
  size_t at = 2;
  uint16_t parts[2] = {0, 0};
  for (int p = 0; p < 2; ++p) {
    size_t start = at;
    while (at < text.size() && ascii::is_digit(text[at]) && at - start < 4) ++at;
    size_t n = at - start;
    if (n == 0 || n > 3) return std::nullopt;
    std::from_chars(text.data() + start, text.data() + at, parts[p]);
    if (p == 0) {
      if (at >= text.size() || text[at] != '.') return std::nullopt;
      ++at;
    }
  }
  if (at < text.size() && text[at] != ' ') return std::nullopt;
  EnhancedCode enh{static_cast<uint8_t>(text[0] - '0'), parts[0], parts[1]};
  return std::make_pair(enh, at < text.size() ? at + 1 : at);
}

void ReplyParser::reset() {
  line_.clear();
  current_ = Reply{};
  in_reply_ = false;
  held_ = 0;
  error_.clear();
}

void ReplyParser::feed(std::string_view in, std::vector<Reply>& out) {
  for (size_t i = 0; i < in.size() && !failed(); ++i) {
    char c = in[i];
    if (c == '\n') {
      std::string_view line = line_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      on_line(line, out);
      line_.clear();
      continue;
    }
    if (line_.size() >= limits_.max_line) {
      error_ = "reply line over " + std::to_string(limits_.max_line) + " bytes";
      return;
    }
    line_ += c;
  }
}

void ReplyParser::on_line(std::string_view line, std::vector<Reply>& out) {
  // Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
  // (RFC 5321 §4.2); Reply-code = %x32-35 %x30-35 %x30-39.
  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || !ascii::is_digit(line[2])) {
    error_ = "malformed reply line";
    return;
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool more = false;
  std::string_view text;
  if (line.size() > 3) {
    if (line[3] == '-') {
      more = true;
    } else if (line[3] != ' ') {
      error_ = "malformed reply line";
      return;
    }
    text = line.substr(4);
  }
  if (in_reply_ && code != current_.code) {
    // RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
    error_ = "reply code changed inside a multi-line reply";
    return;
  }
  if (!in_reply_) {
    current_ = Reply{};
    current_.code = code;
    in_reply_ = true;
    held_ = 0;
  }
  if (current_.lines.size() >= limits_.max_lines || held_ + text.size() > limits_.max_total) {
    error_ = "reply over " + std::to_string(limits_.max_lines) + " lines or " + std::to_string(limits_.max_total) + " bytes";
    return;
  }
  // RFC 2034 ties the enhanced code's class to the reply's first digit; a text that merely
  // starts with digits (a "250 2.0 host" greeting) keeps them.
  if (auto enh = parse_enhanced(text); enh && enh->first.klass == code / 100) {
    if (current_.lines.empty()) current_.enhanced = enh->first;
    text.remove_prefix(enh->second);
  }
  held_ += text.size();
  current_.lines.emplace_back(text);
  if (!more) {
    out.push_back(std::move(current_));
    current_ = Reply{};
    in_reply_ = false;
    held_ = 0;
  }
}

}  // namespace common::smtp
