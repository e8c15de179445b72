// The safetensors reader treats files as untrusted: each malformed case has its own message.
#include "common/safetensors/safetensors.h"

#include <cstring>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::HasSubstr;

std::string WithHeader(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

std::string Error(const std::string& buffer) {
  auto file = SafetensorsFile::FromBuffer(buffer, "w.safetensors");
  EXPECT_FALSE(file.ok());
  return file.ok() ? "" : std::string(file.status().message());
}

TEST(SafetensorsTest, ReadsAValidFile) {
  std::string buffer = WithHeader(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}})", 22);
  auto file = SafetensorsFile::FromBuffer(buffer, "w");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_NE((*file)->Find("b"), nullptr);
  EXPECT_EQ((*file)->Find("b")->num_elements(), 3);
  EXPECT_EQ((*file)->Find("a")->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*file)->Find("c"), nullptr);
}

TEST(SafetensorsTest, WriterOutputReadsBack) {
  const std::string path = ::testing::TempDir() + "/writer_test.safetensors";
  std::string bytes(12, '\0');
  float values[3] = {1.5f, -2.0f, 3.25f};
  std::memcpy(bytes.data(), values, 12);
  ASSERT_TRUE(WriteSafetensors(path, {{"x", DType::kF32, {3}, bytes}}, {{"format", "pt"}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* x = (*file)->Find("x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(std::memcmp(x->data, values, 12), 0);
}

TEST(SafetensorsTest, TooShort) { EXPECT_THAT(Error("abc"), HasSubstr("8-byte header length")); }

TEST(SafetensorsTest, HeaderLengthPastEnd) {
  std::string buffer = WithHeader("{}", 0);
  buffer[0] = 100;
  EXPECT_THAT(Error(buffer), HasSubstr("runs past the end"));
}

TEST(SafetensorsTest, HugeHeaderLength) {
  std::string buffer(16, '\xff');
  EXPECT_THAT(Error(buffer), HasSubstr("100 MB limit"));
}

TEST(SafetensorsTest, NotJson) { EXPECT_THAT(Error(WithHeader("{oops", 0)), HasSubstr("not valid JSON")); }

TEST(SafetensorsTest, NotAnObject) { EXPECT_THAT(Error(WithHeader("[1]", 0)), HasSubstr("not a JSON object")); }

TEST(SafetensorsTest, UnknownDtype) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", 1)),
              AllOf(HasSubstr("tensor \"t\""), HasSubstr("unknown dtype \"F8\"")));
}

TEST(SafetensorsTest, NegativeDimension) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
              HasSubstr("negative"));
}

TEST(SafetensorsTest, OffsetsPastTheData) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
              HasSubstr("past the data section"));
}

TEST(SafetensorsTest, SizeDoesNotMatchShape) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
              HasSubstr("holds 8 bytes but its shape and dtype need 12"));
}

TEST(SafetensorsTest, ReversedOffsets) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8)),
              HasSubstr("reversed"));
}

TEST(SafetensorsTest, OverlappingTensors) {
  EXPECT_THAT(Error(WithHeader(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
              HasSubstr("overlap"));
}

TEST(SafetensorsTest, ShapeOverflow) {
  EXPECT_THAT(Error(WithHeader(
                  R"({"t":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", 4)),
              HasSubstr("too large"));
}

TEST(SafetensorsTest, MissingFields) {
  EXPECT_THAT(Error(WithHeader(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4)), HasSubstr("missing dtype"));
  EXPECT_THAT(Error(WithHeader(R"({"t":{"dtype":"F32","shape":[1]}})", 4)), HasSubstr("data_offsets"));
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace specdec
