// uid_map.hpp: the selected mailbox's UIDs as the IMAP session numbers them (sequence number n is
// the n-th UID, ascending), kept as runs of consecutive UIDs: a mailbox whose UIDs have few gaps
// costs a few bytes however many messages it holds, which is what an idle session pays for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mmp {

class UidMap {
 public:
  struct Range {
    uint32_t first = 0;
    uint32_t last = 0;
  };

  // Replaces the contents with these ranges (ascending, not overlapping; adjacent ones are merged).
  void assign(std::span<const Range> ranges);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint32_t last_uid() const;  // 0 when empty
  // 1-based sequence number -> UID; 0 when out of range. O(log runs).
  uint32_t uid_at(uint32_t seq) const;
  // UID -> 1-based sequence number; 0 when not in the map. O(log runs).
  uint32_t seq_of(uint32_t uid) const;
  // Appends a UID above every one held (a new message); false (and nothing changed) otherwise.
  bool push_back(uint32_t uid);
  // Removes these UIDs (ascending; ones not held are ignored); O(runs + removed).
  void remove(std::span<const uint32_t> ascending);
  // The UID runs that sequence numbers [first, last] (1-based, clipped to size) name, appended in
  // order to `out`.
  void uids_of(uint32_t first, uint32_t last, std::vector<Range>& out) const;
  // The UIDs held within [first, last], appended ascending; O(log runs + found).
  void held(uint32_t first, uint32_t last, std::vector<uint32_t>& out) const;
  size_t runs() const { return runs_.size(); }
  // Heap bytes held (for the memory per session).
  size_t heap_bytes() const { return runs_.capacity() * sizeof(Run); }

 private:
  // A run of consecutive UIDs starting at `first`, holding sequence numbers from `start` + 1; its
  // length is the next run's start (or size_) minus its own.
  struct Run {
    uint32_t first;
    uint32_t start;
  };
  uint32_t length(size_t i) const { return (i + 1 < runs_.size() ? runs_[i + 1].start : static_cast<uint32_t>(size_)) - runs_[i].start; }

  std::vector<Run> runs_;
  size_t size_ = 0;
};

}  // namespace mmp
