// uid_map.cpp: the selected mailbox's UIDs as runs (uid_map.hpp).
#include "mmp/uid_map.hpp"

#include <algorithm>

namespace mmp {

void UidMap::assign(std::span<const Range> ranges) {
  runs_.clear();
  size_ = 0;
  for (const Range& r : ranges) {
    if (r.last < r.first || (!runs_.empty() && r.first <= last_uid())) continue;  // not ascending: dropped
    if (runs_.empty() || r.first != last_uid() + 1) runs_.push_back({r.first, static_cast<uint32_t>(size_)});
    size_ += static_cast<size_t>(r.last - r.first) + 1;
  }
  runs_.shrink_to_fit();
}

uint32_t UidMap::last_uid() const {
  if (runs_.empty()) return 0;
  return runs_.back().first + (static_cast<uint32_t>(size_) - runs_.back().start) - 1;
}

uint32_t UidMap::uid_at(uint32_t seq) const {
  if (seq == 0 || seq > size_) return 0;
  const uint32_t index = seq - 1;
  // The last run starting at or before `index`.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), index, [](uint32_t i, const Run& r) { return i < r.start; });
  --it;
  return it->first + (index - it->start);
}

uint32_t UidMap::seq_of(uint32_t uid) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), uid, [](uint32_t u, const Run& r) { return u < r.first; });
  if (it == runs_.begin()) return 0;
  --it;
  const size_t i = static_cast<size_t>(it - runs_.begin());
  const uint32_t offset = uid - it->first;
  return offset < length(i) ? it->start + offset + 1 : 0;
}

bool UidMap::push_back(uint32_t uid) {
  if (uid == 0 || (!runs_.empty() && uid <= last_uid())) return false;
  if (runs_.empty() || uid != last_uid() + 1) runs_.push_back({uid, static_cast<uint32_t>(size_)});
  ++size_;
  return true;
}

void UidMap::remove(std::span<const uint32_t> ascending) {
  if (ascending.empty() || runs_.empty()) return;
  // Rebuilt in one pass: each run is split around the UIDs removed from it.
  std::vector<Run> out;
  out.reserve(runs_.size() + 1);
  size_t size = 0;
  auto gone = ascending.begin();
  auto emit = [&](uint32_t first, uint32_t last) {
    if (last < first) return;
    if (out.empty() || first != out.back().first + (static_cast<uint32_t>(size) - out.back().start)) {
      out.push_back({first, static_cast<uint32_t>(size)});
    }
    size += static_cast<size_t>(last - first) + 1;
  };
  for (size_t i = 0; i < runs_.size(); ++i) {
    const uint32_t first = runs_[i].first;
    const uint32_t last = first + length(i) - 1;
    while (gone != ascending.end() && *gone < first) ++gone;
    uint32_t from = first;
    for (; gone != ascending.end() && *gone <= last; ++gone) {
      if (*gone > from) emit(from, *gone - 1);
      if (*gone >= from) from = *gone + 1;
      if (from == 0) break;  // UID 4294967295 removed: nothing follows it
    }
    if (from != 0 && from <= last) emit(from, last);
  }
  runs_ = std::move(out);
  size_ = size;
  if (runs_.capacity() > 2 * runs_.size() + 4) runs_.shrink_to_fit();
}

void UidMap::held(uint32_t first, uint32_t last, std::vector<uint32_t>& out) const {
  if (last < first || runs_.empty()) return;
  auto it = std::upper_bound(runs_.begin(), runs_.end(), first, [](uint32_t u, const Run& r) { return u < r.first; });
  if (it != runs_.begin()) --it;
  for (; it != runs_.end() && it->first <= last; ++it) {
    const uint64_t run_last = static_cast<uint64_t>(it->first) + length(static_cast<size_t>(it - runs_.begin())) - 1;
    for (uint64_t u = std::max(first, it->first); u <= std::min<uint64_t>(last, run_last); ++u) {
      out.push_back(static_cast<uint32_t>(u));
    }
  }
}

void UidMap::uids_of(uint32_t first, uint32_t last, std::vector<Range>& out) const {
  if (first == 0) first = 1;
  if (last > size_) last = static_cast<uint32_t>(size_);
  if (first > last) return;
  const uint32_t from = first - 1, to = last - 1;  // 0-based indexes
  auto it = std::upper_bound(runs_.begin(), runs_.end(), from, [](uint32_t i, const Run& r) { return i < r.start; });
  for (--it; it != runs_.end() && it->start <= to; ++it) {
    const size_t i = static_cast<size_t>(it - runs_.begin());
    const uint32_t begin = std::max(from, it->start);
    const uint32_t end = std::min(to, it->start + length(i) - 1);
    const Range r{it->first + (begin - it->start), it->first + (end - it->start)};
    if (!out.empty() && out.back().last + 1 == r.first) {
      out.back().last = r.last;
    } else {
      out.push_back(r);
    }
  }
}

}  // namespace mmp
