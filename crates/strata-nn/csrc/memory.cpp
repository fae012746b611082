// Allocator statistics that tch does not expose: libtorch's CUDA caching allocator (through the
// device-generic c10 interface, so no CUDA headers are needed) and glibc's heap, which serves
// libtorch's CPU allocator.
#include <c10/core/CachingDeviceAllocator.h>
#include <malloc.h>

extern "C" {

// Gives the heap's free pages back to the system (glibc keeps them after large frees).
void strata_release_free_heap() { malloc_trim(0); }

// Bytes currently handed out by malloc (small chunks plus mmapped large blocks).
unsigned long long strata_heap_in_use() {
  struct mallinfo2 m = mallinfo2();
  return (unsigned long long)(m.uordblks + m.hblkhd);
}

// 0 on success; non-zero when no CUDA allocator is loaded or initialised.
int strata_cuda_allocated(int device, unsigned long long* current, unsigned long long* peak) {
  try {
    auto* a = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    if (a == nullptr || !a->initialized()) return 1;
    auto stats = a->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto& all = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    *current = static_cast<unsigned long long>(all.current);
    *peak = static_cast<unsigned long long>(all.peak);
    return 0;
  } catch (...) {
    return 2;
  }
}

int strata_cuda_reset_peak(int device) {
  try {
    auto* a = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    if (a == nullptr || !a->initialized()) return 1;
    a->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (...) {
    return 2;
  }
}
}
