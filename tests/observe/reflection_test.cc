// Server reflection as grpcurl uses it, against the three real services: list the services,
// fetch the file that declares one (with its dependencies), build a descriptor pool from what
// came back, then call a method knowing only that pool: a JSON request turned into a dynamic
// message, sent as raw bytes (grpc::GenericStub), the answer decoded with the reflected type.
// No compiled-in stub of the called service is involved; the reflected schema is also compared
// with the one the project compiles.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "specdec/v1/gateway.pb.h"
#include "specdec/v1/verifier.pb.h"
#include "tests/integration/service_process.h"
#include "tests/observe/service_stack.h"

namespace specdec {
namespace {

namespace reflection = ::grpc::reflection::v1alpha;
namespace pb = ::google::protobuf;
using ::specdec::testing::ServiceProcess;
using ::specdec::testing::ServiceStack;

// A reflection client over one stream, as grpcurl keeps one per server.
class ReflectionClient {
 public:
  explicit ReflectionClient(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        stub_(reflection::ServerReflection::NewStub(channel_)),
        stream_(stub_->ServerReflectionInfo(&context_)) {}

  ~ReflectionClient() {
    stream_->WritesDone();
    reflection::ServerReflectionResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    (void)stream_->Finish();
  }

  reflection::ServerReflectionResponse Ask(const reflection::ServerReflectionRequest& request) {
    reflection::ServerReflectionResponse response;
    EXPECT_TRUE(stream_->Write(request));
    EXPECT_TRUE(stream_->Read(&response));
    return response;
  }

  std::set<std::string> ListServices() {
    reflection::ServerReflectionRequest request;
    request.set_list_services("");
    std::set<std::string> names;
    const reflection::ServerReflectionResponse response = Ask(request);
    for (const auto& service : response.list_services_response().service()) {
      names.insert(service.name());
    }
    return names;
  }

  // Adds the file declaring `symbol` and its dependencies to the database; false (and the
  // server's error in *error) when the server does not know the symbol.
  bool LoadSymbol(const std::string& symbol, std::string* error = nullptr) {
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    const reflection::ServerReflectionResponse response = Ask(request);
    if (response.has_error_response()) {
      if (error != nullptr) {
        *error = absl::StrCat(response.error_response().error_code(), " ",
                              response.error_response().error_message());
      }
      return false;
    }
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      if (loaded_.insert(file.name()).second) database_.Add(file);
    }
    return true;
  }

  // The pool over everything loaded so far (descriptors resolve lazily from the database).
  const pb::DescriptorPool& pool() { return pool_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<reflection::ServerReflection::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<reflection::ServerReflectionRequest,
                                           reflection::ServerReflectionResponse>>
      stream_;
  pb::SimpleDescriptorDatabase database_;
  pb::DescriptorPool pool_{&database_};
  std::set<std::string> loaded_;
};

// Calls a unary method by name with a JSON request, using only reflected descriptors; the answer
// as JSON.
grpc::Status CallUnary(ReflectionClient& client, const pb::MethodDescriptor* method,
                       const std::string& json_request, std::string* json_response) {
  pb::DynamicMessageFactory factory(&client.pool());
  std::unique_ptr<pb::Message> request(factory.GetPrototype(method->input_type())->New());
  std::unique_ptr<pb::Message> response(factory.GetPrototype(method->output_type())->New());
  if (!pb::util::JsonStringToMessage(json_request, request.get()).ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad JSON request");
  }
  const std::string bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::GenericStub stub(client.channel());
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const std::string path = absl::StrCat("/", method->service()->full_name(), "/", method->name());
  auto call = stub.PrepareUnaryCall(&context, path, request_buffer, &cq);
  call->StartCall();
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  (void)response_buffer.Dump(&slices);
  std::string answer;
  for (const grpc::Slice& s : slices)
    answer.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!response->ParseFromString(answer)) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "the answer does not parse as the reflected type");
  }
  (void)pb::util::MessageToJsonString(*response, json_response);
  return grpc::Status::OK;
}

class ReflectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new ServiceStack("reflection");
    ASSERT_TRUE(stack_->MakeModel());
    ASSERT_TRUE(stack_->StartServices({}, {"--draft_layers=0"}, {}));
    verifier_ = stack_->verifier();
    draft_ = stack_->draft();
    gateway_ = stack_->gateway();
  }

  static void TearDownTestSuite() { delete stack_; }

  static ServiceStack* stack_;
  static ServiceProcess* verifier_;
  static ServiceProcess* draft_;
  static ServiceProcess* gateway_;
};

ServiceStack* ReflectionTest::stack_ = nullptr;
ServiceProcess* ReflectionTest::verifier_ = nullptr;
ServiceProcess* ReflectionTest::draft_ = nullptr;
ServiceProcess* ReflectionTest::gateway_ = nullptr;

TEST_F(ReflectionTest, EachServiceListsItsApiHealthAndReflection) {
  const std::vector<std::pair<ServiceProcess*, std::string>> services = {
      {gateway_, "specdec.v1.Gateway"},
      {draft_, "specdec.v1.Draft"},
      {verifier_, "specdec.v1.Verifier"}};
  for (const auto& [process, name] : services) {
    ReflectionClient client(process->address());
    const std::set<std::string> listed = client.ListServices();
    EXPECT_EQ(listed.count(name), 1u) << name;
    EXPECT_EQ(listed.count("grpc.health.v1.Health"), 1u) << name;
    EXPECT_EQ(listed.count("grpc.reflection.v1alpha.ServerReflection"), 1u) << name;
    // Every listed service resolves to a file whose descriptors build (dependencies included).
    for (const std::string& service : listed) {
      std::string error;
      ASSERT_TRUE(client.LoadSymbol(service, &error)) << name << ": " << service << ": " << error;
      EXPECT_NE(client.pool().FindServiceByName(service), nullptr) << service;
    }
  }
}

TEST_F(ReflectionTest, ReflectedSchemaIsTheCompiledOne) {
  ReflectionClient client(gateway_->address());
  ASSERT_TRUE(client.LoadSymbol("specdec.v1.Gateway"));
  const pb::ServiceDescriptor* gateway = client.pool().FindServiceByName("specdec.v1.Gateway");
  ASSERT_NE(gateway, nullptr);
  const pb::MethodDescriptor* generate = gateway->FindMethodByName("Generate");
  ASSERT_NE(generate, nullptr);
  EXPECT_TRUE(generate->server_streaming());
  EXPECT_FALSE(generate->client_streaming());
  EXPECT_EQ(generate->input_type()->full_name(), "specdec.v1.GenerateRequest");
  // Field for field, what a reflection client sees is what the project compiles.
  EXPECT_EQ(generate->input_type()->DebugString(),
            v1::GenerateRequest::descriptor()->DebugString());
  EXPECT_EQ(generate->output_type()->DebugString(),
            v1::GenerateResponse::descriptor()->DebugString());

  ReflectionClient verifier(verifier_->address());
  ASSERT_TRUE(verifier.LoadSymbol("specdec.v1.Verifier"));
  const pb::Descriptor* request =
      verifier.pool().FindMessageTypeByName("specdec.v1.VerifierRequest");
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->DebugString(), v1::VerifierRequest::descriptor()->DebugString());
  // The dependency (session.proto) came with it.
  EXPECT_NE(verifier.pool().FindMessageTypeByName("specdec.v1.TokenSpan"), nullptr);
}

TEST_F(ReflectionTest, UnknownSymbolIsNotFound) {
  ReflectionClient client(gateway_->address());
  std::string error;
  EXPECT_FALSE(client.LoadSymbol("no.such.Service", &error));
  EXPECT_EQ(error.rfind(std::to_string(static_cast<int>(grpc::StatusCode::NOT_FOUND)), 0), 0u)
      << error;
}

// What `grpcurl -plaintext -d '{}' HOST specdec.v1.Gateway/GetInfo` does.
TEST_F(ReflectionTest, CallsAMethodFromReflectedDescriptorsOnly) {
  ReflectionClient client(gateway_->address());
  ASSERT_TRUE(client.LoadSymbol("specdec.v1.Gateway.GetInfo"));
  const pb::MethodDescriptor* get_info =
      client.pool().FindMethodByName("specdec.v1.Gateway.GetInfo");
  ASSERT_NE(get_info, nullptr);
  std::string answer;
  const grpc::Status status = CallUnary(client, get_info, "{}", &answer);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(answer.find("\"modelName\":\"tinymodel\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"vocabSize\":50304"), std::string::npos) << answer;

  ReflectionClient draft(draft_->address());
  ASSERT_TRUE(draft.LoadSymbol("specdec.v1.Draft"));
  const pb::MethodDescriptor* stats = draft.pool().FindMethodByName("specdec.v1.Draft.GetStats");
  ASSERT_NE(stats, nullptr);
  EXPECT_TRUE(CallUnary(draft, stats, "{}", &answer).ok());
}

}  // namespace
}  // namespace specdec
