// Stand-in for Gloo's header of this name: see dissect_gloo_decls.hpp.
#pragma once
#include <dissect_gloo_decls.hpp>
