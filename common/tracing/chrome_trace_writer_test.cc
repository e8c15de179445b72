// Tests for the Chrome trace-event writer: spans of a trace on their tracks, round spans on two
// tracks by the parity of their round (so overlapped rounds never share a track), the clock
// mapping the spans are timed with.
#include "common/tracing/chrome_trace_writer.h"

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

SpanData Span(const TraceId& trace, const std::string& name, uint64_t start, uint64_t end,
              int64_t round = -1) {
  SpanData span;
  span.trace_id = trace;
  span.span_id = NewSpanId();
  span.name = name;
  span.start_unix_ns = start;
  span.end_unix_ns = end;
  if (round >= 0) span.Set("specdec.round", round);
  return span;
}

TEST(ChromeTraceWriterTest, RoundsOfOneTraceAlternateBetweenTwoTracks) {
  const std::string path = ::testing::TempDir() + "/chrome_trace_writer_test.json";
  auto writer = ChromeTraceWriter::Open(path, "test");
  ASSERT_TRUE(writer.ok()) << writer.status();
  const TraceId a = NewTraceId();
  const TraceId b = NewTraceId();
  const uint64_t t = UnixNanosNow();
  // Round 1 starts (its pre-draft) before round 0 ends: they overlap.
  SpanData generate = Span(a, "Generate", t, t + 100);
  generate.Set("specdec.request_id", "req-a");
  ASSERT_TRUE(
      (*writer)
          ->Export({Span(a, "round", t + 10, t + 50, 0), Span(a, "draft", t + 40, t + 45, 1),
                    Span(a, "round", t + 40, t + 80, 1), Span(a, "round", t + 81, t + 90, 2),
                    generate, Span(b, "round", t, t + 10, 0)})
          .ok());
  (*writer)->Shutdown();

  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json events = nlohmann::json::parse(text.str());
  std::map<std::string, int> tid_of;  // "<trace> <name> <round>" -> tid
  std::map<int, std::string> track_name;
  for (const auto& event : events) {
    if (event["ph"] == "M" && event["name"] == "thread_name") {
      track_name[event["tid"].get<int>()] = event["args"]["name"];
    }
    if (event["ph"] != "X") continue;
    const std::string key = event["args"]["trace_id"].get<std::string>().substr(0, 4) + " " +
                            event["name"].get<std::string>() + " " +
                            std::to_string(event["args"].value("specdec.round", int64_t{-1}));
    tid_of[key] = event["tid"];
  }
  const std::string ha = ToHex(a).substr(0, 4);
  const std::string hb = ToHex(b).substr(0, 4);
  ASSERT_EQ(tid_of.size(), 6u);
  // Even rounds share a track, odd rounds have the other; the draft of round 1 sits with it.
  EXPECT_EQ(tid_of[ha + " round 0"], tid_of[ha + " round 2"]);
  EXPECT_NE(tid_of[ha + " round 0"], tid_of[ha + " round 1"]);
  EXPECT_EQ(tid_of[ha + " draft 1"], tid_of[ha + " round 1"]);
  // The request's own spans have a third track, named after its request id.
  EXPECT_NE(tid_of[ha + " Generate -1"], tid_of[ha + " round 0"]);
  EXPECT_NE(tid_of[ha + " Generate -1"], tid_of[ha + " round 1"]);
  EXPECT_EQ(track_name[tid_of[ha + " Generate -1"]], "req-a");
  // Another trace never shares a track.
  for (const char* name : {" round 0", " round 1", " Generate -1"}) {
    EXPECT_NE(tid_of[hb + " round 0"], tid_of[ha + name]);
  }
}

TEST(SteadyToUnixTest, KeepsOrderAndLengths) {
  const SteadyToUnix clock;
  const auto t0 = std::chrono::steady_clock::now();
  const auto t1 = t0 + std::chrono::milliseconds(3);
  EXPECT_EQ(clock(t1) - clock(t0), 3000000u);
  // Close to the wall clock now (both read within this test).
  const uint64_t now = UnixNanosNow();
  const uint64_t mapped = clock(std::chrono::steady_clock::now());
  EXPECT_LT(mapped > now ? mapped - now : now - mapped, 50000000u);  // 50 ms
  // A time before the origin maps before it.
  EXPECT_LT(clock(clock.origin() - std::chrono::milliseconds(1)), clock.origin_unix_ns());
}

}  // namespace
}  // namespace specdec
