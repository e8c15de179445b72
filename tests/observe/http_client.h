// Test helper: a raw HTTP/1.1 client for the services' HTTP doors (the gateway's OpenAI API,
// /metrics): one request per connection (Connection: close), read to EOF. No timeouts: the
// servers under test close the connection.
#ifndef SPECDEC_TESTS_OBSERVE_HTTP_CLIENT_H_
#define SPECDEC_TESTS_OBSERVE_HTTP_CLIENT_H_

#include <map>
#include <string>

namespace specdec::testing {

struct HttpResponse {
  int status = 0;  // 0: no answer
  std::string headers;
  std::string body;
};

// A TCP connection to 127.0.0.1:port; -1 when refused.
int ConnectLoopback(int port);

// The request's bytes (a JSON Content-Type when there is a body). `headers`: more header
// lines, each ending in "\r\n".
std::string HttpRequestText(const std::string& method, const std::string& path,
                            const std::string& body, const std::string& headers = "");

HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::string& body = "", const std::string& headers = "");

// Prometheus text of GET /metrics -> {"name{labels}": value}; empty when the scrape fails.
std::map<std::string, double> Scrape(int port);

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_OBSERVE_HTTP_CLIENT_H_
