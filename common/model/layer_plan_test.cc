// LayerPlan parsing and validation.
#include "common/model/layer_plan.h"

#include "common/model/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelConfig SixLayers() {
  ModelConfig c;
  c.vocab_size = 1000, c.hidden_size = 64, c.num_hidden_layers = 6, c.num_attention_heads = 4;
  c.intermediate_size = 256, c.max_position_embeddings = 128;
  return c;
}

TEST(LayerPlanTest, ParsesLayerLists) {
  EXPECT_THAT(*ParseLayerList("0,1,4,5"), ElementsAre(0, 1, 4, 5));
  EXPECT_TRUE(ParseLayerList("")->empty());
  EXPECT_THAT(std::string(ParseLayerList("0,x").status().message()), HasSubstr("\"x\""));
}

TEST(LayerPlanTest, JsonRoundTrip) {
  LayerPlan plan;
  plan.layers = {0, 1, 4, 5};
  plan.masked_heads[1] = {2};
  plan.vocab_size = 4096;
  auto again = ParseLayerPlanJson(plan.ToJson(), "plan.json");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->layers, plan.layers);
  EXPECT_EQ(again->masked_heads, plan.masked_heads);
  EXPECT_EQ(again->vocab_size, 4096);
  EXPECT_EQ(again->Summary(), "layers=0,1,4,5 vocab=4096 masked=1:[2]");
}

TEST(LayerPlanTest, ValidatesAgainstTheModel) {
  LayerPlan plan;
  plan.layers = {0, 6};
  EXPECT_THAT(std::string(plan.Validate(SixLayers()).message()), HasSubstr("layer 6 is out of range"));
  plan.layers = {1, 1};
  EXPECT_THAT(std::string(plan.Validate(SixLayers()).message()), HasSubstr("listed twice"));
  plan.layers = {};
  plan.masked_heads[0] = {0, 1, 2, 3};
  EXPECT_THAT(std::string(plan.Validate(SixLayers()).message()), HasSubstr("masks every head"));
  plan.masked_heads[0] = {4};
  EXPECT_THAT(std::string(plan.Validate(SixLayers()).message()), HasSubstr("head 4"));
  plan.masked_heads.clear();
  plan.vocab_size = 5000;
  EXPECT_THAT(std::string(plan.Validate(SixLayers()).message()), HasSubstr("vocab_size 5000"));
  EXPECT_TRUE(LayerPlan{}.Validate(SixLayers()).ok());
  EXPECT_TRUE(LayerPlan{}.IsFull());
}

}  // namespace
}  // namespace specdec
