// smtp_command_fuzz.cpp: common/smtp on bytes from a client or a server: every argument parser
// (what follows MAIL, RCPT, EHLO, BDAT, ...), the DATA reader and the reply parser. Any split of
// the input must give the same content, end and replies; refusals must render as one safe line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/smtp/command.hpp"
#include "common/smtp/data_reader.hpp"
#include "common/smtp/reply.hpp"

namespace {

using namespace common::smtp;

void check(bool ok) {
  if (!ok) std::abort();
}

// A refusal is a 4xx/5xx reply of one line of at most 512 octets that reads back the same.
void check_error(const SmtpError& e) {
  check(e.code >= 400 && e.code < 600);
  check(e.reason != nullptr && *e.reason != '\0');
  std::string line = render_reply(e);
  check(line.size() <= kMaxReplyLine);
  check(line.find('\n') == line.size() - 1);
  ReplyParser p;
  std::vector<Reply> out;
  p.feed(line, out);
  check(out.size() == 1 && out[0].code == e.code && out[0].enhanced == e.enhanced);
}

template <class T>
void check_result(const SmtpResult<T>& r) {
  if (!r) check_error(r.error());
}

void check_path(const Path& p, const CommandLimits& lim) {
  if (p.null || p.postmaster) return;
  check(p.mailbox.local.size() <= lim.max_local);
  check(p.mailbox.domain.size() <= lim.max_domain);
  check(p.mailbox.address().size() + 2 <= lim.max_path);
  check(valid_utf8(p.mailbox.address()));
  // What we accepted, rendered back as a path, parses to the same mailbox (the mta queues it so).
  auto again = parse_path("<" + p.mailbox.address() + ">", false, true, lim);
  check(again && again->mailbox.address() == p.mailbox.address() && again->mailbox.kind == p.mailbox.kind);
}

void fuzz_commands(std::string_view in) {
  CommandLimits lim;
  lim.binarymime = lim.smtputf8 = lim.dsn = lim.auth = lim.xid = true;
  lim.max_message = 1 << 20;
  lim.max_chunk = 1 << 16;
  for (bool ext : {false, true}) check_result(parse_helo(in, ext, lim));
  if (auto m = parse_mail(in, lim)) {
    check_path(m->path, lim);
    check(!m->path.mailbox.utf8 || m->params.smtputf8);
    check(!m->params.size || *m->params.size <= lim.max_message);
    check(!m->params.xid || valid_xid(*m->params.xid));
    // The client side renders it; parsing that gives the same arguments.
    std::string line = format_mail(*m);
    auto again = parse_mail(std::string_view(line).substr(5, line.size() - 7), lim);
    check(again && again->path.mailbox.address() == m->path.mailbox.address() && again->path.null == m->path.null);
    const MailParams &a = m->params, &b = again->params;
    check(a.size == b.size && a.body == b.body && a.smtputf8 == b.smtputf8 && a.ret == b.ret && a.envid == b.envid &&
          a.auth == b.auth && a.xid == b.xid);
  } else {
    check_error(m.error());
  }
  for (bool utf8 : {false, true}) {
    if (auto r = parse_rcpt(in, utf8, lim)) {
      check_path(r->path, lim);
      check(!r->path.null);
      check(utf8 || !r->path.mailbox.utf8);
      std::string line = format_rcpt(*r);
      auto again = parse_rcpt(std::string_view(line).substr(5, line.size() - 7), utf8, lim);
      check(again && again->path.mailbox.address() == r->path.mailbox.address() &&
            again->path.postmaster == r->path.postmaster && again->params.notify == r->params.notify &&
            again->params.orcpt == r->params.orcpt && again->params.orcpt_type == r->params.orcpt_type);
    } else {
      check_error(r.error());
    }
  }
  if (auto b = parse_bdat(in, lim)) {
    check(b->size <= lim.max_chunk);
  } else {
    check_error(b.error());
    check(b.error().close);
  }
  check_result(parse_no_args(in));
  check_result(parse_string_arg(in, true, true));
  if (auto d = xtext_decode(in)) check(xtext_decode(xtext_encode(*d)) == *d);
}

struct DataRun {
  std::string content;
  size_t consumed = 0;
  bool done = false;
  DataReport report;
};

DataRun read_data(std::string_view in, const DataOptions& opts, size_t step) {
  DataReader r(opts);
  DataRun out;
  std::string chunk;
  for (size_t at = 0; at < in.size() && !out.done;) {
    chunk.clear();
    auto f = r.feed(in.substr(at, step), chunk);
    check(f.consumed <= step);
    check(f.done || f.consumed == std::min(step, in.size() - at));
    out.content += chunk;
    out.consumed += f.consumed;
    at += f.consumed;
    out.done = f.done;
  }
  if (opts.framing == Framing::Counted) {
    r.finish(out.content);
    out.done = r.done();
  }
  out.report = r.report();
  return out;
}

void fuzz_data(std::string_view in, uint8_t knobs, size_t step) {
  DataOptions opts;
  opts.bare = static_cast<BarePolicy>(knobs % 3);
  opts.nul = static_cast<NulPolicy>((knobs / 3) % 3);
  opts.framing = (knobs & 0x80) ? Framing::Counted : Framing::Dot;
  opts.max_size = (knobs & 0x40) ? 64 : 0;
  opts.max_line = (knobs & 0x20) ? 16 : 998;
  DataRun whole = read_data(in, opts, in.size() ? in.size() : 1);
  DataRun split = read_data(in, opts, step);
  check(whole.content == split.content && whole.consumed == split.consumed && whole.done == split.done);
  check(whole.report.size == split.report.size && whole.report.lines == split.report.lines);
  check(whole.report.bare_lf == split.report.bare_lf && whole.report.bare_cr == split.report.bare_cr);
  check(whole.report.nul == split.report.nul && whole.report.long_line == split.report.long_line);
  check(whole.report.too_big == split.report.too_big);
  check(!opts.max_size || whole.content.size() <= opts.max_size);
  check(whole.consumed <= in.size());
  if (opts.framing == Framing::Dot && whole.done) {
    // The only end is CRLF "." CRLF, or ".\r\n" right after the DATA command's own CRLF.
    std::string_view used = in.substr(0, whole.consumed);
    check(used == ".\r\n" || (used.size() >= 5 && used.substr(used.size() - 5) == "\r\n.\r\n"));
  }
  if (opts.bare == BarePolicy::Convert && !whole.report.too_big) {
    // Converted content has no bare CR or LF (a cut at the size limit may split a CRLF).
    for (size_t i = 0; i < whole.content.size(); ++i) {
      if (whole.content[i] == '\n') check(i > 0 && whole.content[i - 1] == '\r');
      if (whole.content[i] == '\r') check(i + 1 < whole.content.size() && whole.content[i + 1] == '\n');
    }
    if (opts.framing == Framing::Dot && whole.done) {
      // Sending it again and reading it back gives the same content.
      DotStuffer s;
      std::string wire;
      s.feed(whole.content, wire);
      s.finish(wire);
      DataOptions plain;
      plain.bare = BarePolicy::Convert;
      plain.nul = NulPolicy::Keep;
      DataRun again = read_data(wire, plain, step);
      check(again.done && again.consumed == wire.size() && again.content == whole.content);
    }
  }
}

void fuzz_replies(std::string_view in, size_t step) {
  ReplyLimits lim;
  lim.max_line = 128;
  lim.max_lines = 8;
  lim.max_total = 512;
  ReplyParser whole(lim), split(lim);
  std::vector<Reply> a, b;
  whole.feed(in, a);
  for (size_t at = 0; at < in.size(); at += step) split.feed(in.substr(at, step), b);
  check(whole.failed() == split.failed() && a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    check(a[i].code == b[i].code && a[i].enhanced == b[i].enhanced && a[i].lines == b[i].lines);
    check(a[i].code >= 200 && a[i].code < 600 && !a[i].lines.empty() && a[i].lines.size() <= lim.max_lines);
    check(!a[i].enhanced.present() || a[i].enhanced.klass == a[i].code / 100);
  }
  check(whole.pending() <= lim.max_line + lim.max_total);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const uint8_t knobs = size > 0 ? data[0] : 0;
  const size_t step = size > 1 ? 1 + data[1] % 13 : 1;
  fuzz_commands(bytes);
  // Arguments are one line; the first line alone too, as a line session would hand it over.
  if (auto nl = bytes.find('\n'); nl != std::string_view::npos) {
    std::string_view line = bytes.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    fuzz_commands(line);
  }
  fuzz_data(bytes, knobs, step);
  fuzz_replies(bytes, step);
  return 0;
}
