// memio.cpp: the memio NSPR layer. Every method NSS may call is defined (the ones a stream never
// needs fail with PR_NOT_IMPLEMENTED_ERROR) so no call reaches a missing lower layer.
#include "common/tls/memio.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include <prerror.h>

namespace common::tls {
namespace {

PRDescIdentity g_identity = PR_INVALID_IO_LAYER;
PRIOMethods g_methods;
std::once_flag g_once;

MemioState* state_of(PRFileDesc* fd) { return reinterpret_cast<MemioState*>(fd->secret); }

PRStatus memio_close(PRFileDesc* fd) {
  delete state_of(fd);
  fd->secret = nullptr;
  fd->dtor(fd);
  return PR_SUCCESS;
}

// The layer's state for a read or write of `amount` bytes; null (NSPR error set) when closed or bad.
MemioState* io_state(PRFileDesc* fd, PRInt32 amount) {
  MemioState* s = state_of(fd);
  if (s == nullptr) {
    PR_SetError(PR_NOT_CONNECTED_ERROR, 0);
    return nullptr;
  }
  if (amount < 0) {
    PR_SetError(PR_INVALID_ARGUMENT_ERROR, 0);
    return nullptr;
  }
  return s;
}

PRInt32 memio_recv(PRFileDesc* fd, void* buf, PRInt32 amount, PRIntn, PRIntervalTime) {
  MemioState* s = io_state(fd, amount);
  if (s == nullptr) return -1;
  size_t have = s->readable();
  if (have == 0) {
    if (s->eof) return 0;
    PR_SetError(PR_WOULD_BLOCK_ERROR, 0);
    return -1;
  }
  size_t n = s->read(static_cast<char*>(buf), std::min(have, static_cast<size_t>(amount)));
  s->records_in.feed(static_cast<const char*>(buf), n);
  return static_cast<PRInt32>(n);
}

PRInt32 memio_read(PRFileDesc* fd, void* buf, PRInt32 amount) {
  return memio_recv(fd, buf, amount, 0, PR_INTERVAL_NO_WAIT);
}

// Accepts everything: backpressure is the connection's job (it bounds its write queue).
PRInt32 memio_send(PRFileDesc* fd, const void* buf, PRInt32 amount, PRIntn, PRIntervalTime) {
  MemioState* s = io_state(fd, amount);
  if (s == nullptr) return -1;
  s->records_out.feed(static_cast<const char*>(buf), static_cast<size_t>(amount), s->on_record_out, s->owner);
  if (s->released) {
    // Under the key and at the sequence numbers the transform's own record layer now uses: sending
    // it would reuse an AEAD nonce.
    if (s->writes_after_release != nullptr) ++*s->writes_after_release;
    PR_SetError(PR_IO_ERROR, 0);
    return -1;
  }
  s->out.append(static_cast<const char*>(buf), static_cast<size_t>(amount));
  return amount;
}

PRInt32 memio_write(PRFileDesc* fd, const void* buf, PRInt32 amount) {
  return memio_send(fd, buf, amount, 0, PR_INTERVAL_NO_WAIT);
}

PRInt32 memio_writev(PRFileDesc* fd, const PRIOVec* iov, PRInt32 size, PRIntervalTime) {
  PRInt32 total = 0;
  for (PRInt32 i = 0; i < size; ++i) {
    PRInt32 n = memio_send(fd, iov[i].iov_base, iov[i].iov_len, 0, PR_INTERVAL_NO_WAIT);
    if (n < 0) return n;
    total += n;
  }
  return total;
}

PRInt32 memio_available(PRFileDesc* fd) {
  MemioState* s = state_of(fd);
  return s ? static_cast<PRInt32>(s->readable()) : 0;
}

PRInt64 memio_available64(PRFileDesc* fd) { return memio_available(fd); }

// The model has no peer; SSL_ImportFD asks and must get a clean "not connected", or the process crashes.
// A connection reports an unspecified IPv4 address: NSS only keys its session-ID cache with it.
PRStatus memio_getpeername(PRFileDesc* fd, PRNetAddr* addr) {
  if (state_of(fd) == nullptr) {
    PR_SetError(PR_NOT_CONNECTED_ERROR, 0);
    return PR_FAILURE;
  }
  std::memset(addr, 0, sizeof *addr);
  addr->inet.family = PR_AF_INET;
  return PR_SUCCESS;
}

PRStatus memio_getsockname(PRFileDesc* fd, PRNetAddr* addr) { return memio_getpeername(fd, addr); }

// NSS decides blocking or not from this option; it must say non-blocking, or NSS blocks where it must return "would block".
PRStatus memio_getsocketoption(PRFileDesc*, PRSocketOptionData* data) {
  if (data->option == PR_SockOpt_Nonblocking) {
    data->value.non_blocking = PR_TRUE;
    return PR_SUCCESS;
  }
  PR_SetError(PR_OPERATION_NOT_SUPPORTED_ERROR, 0);
  return PR_FAILURE;
}

PRStatus memio_setsocketoption(PRFileDesc*, const PRSocketOptionData* data) {
  if (data->option == PR_SockOpt_Nonblocking) return PR_SUCCESS;
  PR_SetError(PR_OPERATION_NOT_SUPPORTED_ERROR, 0);
  return PR_FAILURE;
}

PRStatus memio_shutdown(PRFileDesc*, PRIntn) { return PR_SUCCESS; }

PRInt16 memio_poll(PRFileDesc*, PRInt16 in_flags, PRInt16* out_flags) {
  *out_flags = 0;
  return in_flags;
}

PRStatus fail_status() {
  PR_SetError(PR_NOT_IMPLEMENTED_ERROR, 0);
  return PR_FAILURE;
}
PRInt32 fail_int() {
  PR_SetError(PR_NOT_IMPLEMENTED_ERROR, 0);
  return -1;
}

void init_layer() {
  g_identity = PR_GetUniqueIdentity("postern-memio");
  g_methods = *PR_GetDefaultIOMethods();
  g_methods.file_type = PR_DESC_LAYERED;
  g_methods.close = memio_close;
  g_methods.read = memio_read;
  g_methods.write = memio_write;
  g_methods.available = memio_available;
  g_methods.available64 = memio_available64;
  g_methods.fsync = [](PRFileDesc*) { return fail_status(); };
  g_methods.seek = [](PRFileDesc*, PRInt32, PRSeekWhence) -> PRInt32 { return fail_int(); };
  g_methods.seek64 = [](PRFileDesc*, PRInt64, PRSeekWhence) -> PRInt64 { return fail_int(); };
  g_methods.fileInfo = [](PRFileDesc*, PRFileInfo*) { return fail_status(); };
  g_methods.fileInfo64 = [](PRFileDesc*, PRFileInfo64*) { return fail_status(); };
  g_methods.writev = memio_writev;
  g_methods.connect = [](PRFileDesc*, const PRNetAddr*, PRIntervalTime) { return fail_status(); };
  g_methods.accept = [](PRFileDesc*, PRNetAddr*, PRIntervalTime) -> PRFileDesc* {
    PR_SetError(PR_NOT_IMPLEMENTED_ERROR, 0);
    return nullptr;
  };
  g_methods.bind = [](PRFileDesc*, const PRNetAddr*) { return fail_status(); };
  g_methods.listen = [](PRFileDesc*, PRIntn) { return fail_status(); };
  g_methods.shutdown = memio_shutdown;
  g_methods.recv = memio_recv;
  g_methods.send = memio_send;
  g_methods.recvfrom = [](PRFileDesc*, void*, PRInt32, PRIntn, PRNetAddr*, PRIntervalTime) { return fail_int(); };
  g_methods.sendto = [](PRFileDesc*, const void*, PRInt32, PRIntn, const PRNetAddr*, PRIntervalTime) {
    return fail_int();
  };
  g_methods.poll = memio_poll;
  g_methods.acceptread = [](PRFileDesc*, PRFileDesc**, PRNetAddr**, void*, PRInt32, PRIntervalTime) {
    return fail_int();
  };
  g_methods.transmitfile = [](PRFileDesc*, PRFileDesc*, const void*, PRInt32, PRTransmitFileFlags,
                              PRIntervalTime) { return fail_int(); };
  g_methods.getsockname = memio_getsockname;
  g_methods.getpeername = memio_getpeername;
  g_methods.getsocketoption = memio_getsocketoption;
  g_methods.setsocketoption = memio_setsocketoption;
  g_methods.sendfile = [](PRFileDesc*, PRSendFileData*, PRTransmitFileFlags, PRIntervalTime) { return fail_int(); };
  g_methods.connectcontinue = [](PRFileDesc*, PRInt16) { return fail_status(); };
}

PRFileDesc* create(MemioState* state) {
  std::call_once(g_once, init_layer);
  PRFileDesc* fd = PR_CreateIOLayerStub(g_identity, &g_methods);
  if (fd == nullptr) {
    delete state;
    return nullptr;
  }
  fd->secret = reinterpret_cast<PRFilePrivate*>(state);
  return fd;
}

}  // namespace

void MemioState::begin_input(std::string_view bytes) {
  if (rest_pos < rest.size()) {
    rest.append(bytes);  // keep arrival order behind the leftovers
  } else {
    feed = bytes;
  }
}

void MemioState::end_input() {
  if (!feed.empty()) {
    if (rest_pos > 0) {
      rest.erase(0, rest_pos);
      rest_pos = 0;
    }
    rest.append(feed);
  }
  feed = {};
}

size_t MemioState::read(char* dst, size_t n) {
  size_t done = 0;
  if (rest_pos < rest.size()) {
    done = std::min(n, rest.size() - rest_pos);
    std::memcpy(dst, rest.data() + rest_pos, done);
    rest_pos += done;
    if (rest_pos == rest.size()) {
      std::string().swap(rest);  // give the memory back: an idle connection holds no input buffer
      rest_pos = 0;
    }
  }
  if (done < n && !feed.empty()) {
    size_t more = std::min(n - done, feed.size());
    std::memcpy(dst + done, feed.data(), more);
    feed.remove_prefix(more);
    done += more;
  }
  return done;
}

void RecordTally::feed(const char* data, size_t n, void (*done)(void* arg, uint8_t type), void* arg) {
  constexpr unsigned char kApplicationData = 23;
  auto complete = [&] {
    ++records;
    if (header[0] != kApplicationData) ++unprotected;
    if (done != nullptr) done(arg, header[0]);
  };
  while (n > 0) {
    if (body_left > 0) {
      size_t k = std::min(n, body_left);
      body_left -= k;
      data += k;
      n -= k;
      if (body_left == 0) complete();
      continue;
    }
    header[header_have++] = static_cast<unsigned char>(*data++);
    --n;
    if (header_have == sizeof header) {
      header_have = 0;
      body_left = (size_t{header[3]} << 8) | header[4];
      if (body_left == 0) complete();
    }
  }
}

void MemioState::take_output(std::string& wire) {
  if (out.empty()) return;
  if (wire.empty()) {
    wire.swap(out);
    out.clear();
  } else {
    wire.append(out);
    std::string().swap(out);
  }
}

PRFileDesc* memio_create() { return create(new MemioState()); }

PRFileDesc* memio_create_model() { return create(nullptr); }

MemioState* memio_state(PRFileDesc* stack) {
  if (stack == nullptr || g_identity == PR_INVALID_IO_LAYER) return nullptr;
  PRFileDesc* layer = PR_GetIdentitiesLayer(stack, g_identity);
  return layer ? state_of(layer) : nullptr;
}

}  // namespace common::tls
