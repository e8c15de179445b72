// The caching CPU allocator: a steady-state decode loop takes no memory from the system for its
// tensors, and outputs do not change. Its own binary: the allocator, once installed, serves
// every tensor of the process. The CPU engine creates no tensor per token on its own; the
// tensors left are those of KV policies whose attention still runs in libtorch (here int8).
#include <filesystem>

#include "common/model/caching_cpu_allocator.h"
#include "common/model/checkpoint_writer.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/model.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(CachingCpuAllocatorTest, BlockSizesRoundUp) {
  EXPECT_EQ(CachingCpuAllocator::BlockSize(1), 256u);
  EXPECT_EQ(CachingCpuAllocator::BlockSize(1000), 1024u);
  EXPECT_EQ(CachingCpuAllocator::BlockSize(1 << 20), size_t{1} << 20);
  EXPECT_EQ(CachingCpuAllocator::BlockSize((1 << 20) + 1), size_t{1088} << 10);  // 64 KiB steps
}

TEST(CachingCpuAllocatorTest, SteadyStateDecodingAllocatesNothingFromTheSystem) {
  const std::string dir = ::testing::TempDir() + "/specdec_alloc_" + std::to_string(::getpid());
  ModelConfig config = *PresetConfig("tiny");
  config.vocab_size = 1000;
  config.max_position_embeddings = 256;
  ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{3, "f32", 1, ""}, dir).ok());

  KvCacheConfig kv = *ParseKvCacheConfig("int8");
  kv.pool_blocks = 64;
  // The reference run uses the system allocator.
  auto plain_model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  ASSERT_TRUE(plain_model.ok());
  EXPECT_EQ(GetCpuAllocatorStats().system_allocations, 0) << "not installed yet";
  std::vector<float> reference;
  {
    auto sequence = (*(*plain_model)->View(LayerPlan{}, kv))->NewSequence();
    for (int32_t t = 0; t < 120; ++t) {
      auto logits = sequence->Forward({(t * 7) % 1000}, LogitsWanted::kLast);
      ASSERT_TRUE(logits.ok());
      reference.push_back(logits->values[t % logits->cols]);
    }
  }

  UseCachingCpuAllocator();
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(model.ok());
  auto sequence = (*(*model)->View(LayerPlan{}, kv))->NewSequence();
  CpuAllocatorStats warm;
  for (int32_t t = 0; t < 120; ++t) {
    // Warm-up to position 70: the KV cache doubles at 64, attention buffers grow past powers of
    // two; from 70 to 120 no buffer crosses a block size, so nothing new may be taken.
    if (t == 70) warm = GetCpuAllocatorStats();
    auto logits = sequence->Forward({(t * 7) % 1000}, LogitsWanted::kLast);
    ASSERT_TRUE(logits.ok());
    ASSERT_EQ(logits->values[t % logits->cols], reference[t]) << "position " << t;
  }
  const CpuAllocatorStats after = GetCpuAllocatorStats();
  EXPECT_GT(warm.system_allocations, 0);
  EXPECT_EQ(after.system_allocations, warm.system_allocations)
      << "decode steps 70-119 took blocks from the system";
  EXPECT_GT(after.reused - warm.reused, 50 * 20) << "every step reuses dozens of blocks";
}

}  // namespace
}  // namespace specdec
