// The few declarations of Gloo's types that torch's ProcessGroupGloo.hpp needs to be parsed.
//
// The PyPI torch wheels ship c10d's headers but not Gloo's, although ProcessGroupGloo.hpp
// includes five of them. The shim never touches a Gloo object: it builds the process group with
// torch's own (exported) constructor and options factory, and only ever holds Gloo types behind
// std::shared_ptr/std::unique_ptr, whose size does not depend on the pointee. So forward
// declarations suffice, plus the two class shapes the header's inline code names:
//  * gloo::rendezvous::Store is the base of the inline ProcessGroupGloo::GlooStore, whose
//    `override`s must find these virtual functions;
//  * gloo::Context::setTimeout is called by the inline ProcessGroupGloo::setTimeout.
// Nothing declared here is defined, instantiated or called by the shim (ProcessGroupGloo's
// vtable, GlooStore's and those members live in libtorch_cpu), so these declarations never reach
// the object file. build.rs uses them only when the torch include folder lacks gloo/.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {

class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

namespace rendezvous {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};

} // namespace rendezvous

namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport

} // namespace gloo
