// A raw HTTP/1.1 test client (see http_client.h).
#include "tests/observe/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace specdec::testing {

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string HttpRequestText(const std::string& method, const std::string& path,
                            const std::string& body, const std::string& headers) {
  return absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                      headers, body.empty() ? "" : "Content-Type: application/json\r\n",
                      "Content-Length: ", body.size(), "\r\n\r\n", body);
}

HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::string& body, const std::string& headers) {
  HttpResponse out;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return out;
  const std::string request = HttpRequestText(method, path, body, headers);
  (void)!write(fd, request.data(), request.size());
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) raw.append(buffer, static_cast<size_t>(n));
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return out;
  out.headers = raw.substr(0, end);
  out.body = raw.substr(end + 4);
  std::vector<std::string> first =
      absl::StrSplit(out.headers.substr(0, out.headers.find("\r\n")), ' ');
  if (first.size() >= 2) (void)absl::SimpleAtoi(first[1], &out.status);
  return out;
}

std::map<std::string, double> Scrape(int port) {
  std::map<std::string, double> samples;
  const HttpResponse response = HttpRequest(port, "GET", "/metrics");
  if (response.status != 200) return samples;
  for (absl::string_view line : absl::StrSplit(response.body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) {
      continue;
    }
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

}  // namespace specdec::testing
