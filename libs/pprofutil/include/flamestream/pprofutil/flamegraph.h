// Self-contained flame graph pages (no network, no external scripts): an icicle graph drawn
// by a few lines of inline JavaScript from the stack tree embedded as JSON.
//
//   std::string html = pprofutil::DiffFlameGraphHtml(before, after, "checkout: v1 -> v2");
//   FS_RETURN_IF_ERROR(pprofutil::WriteFile("diff.html", html));
//
// The differential page draws the AFTER profile (a toggle switches to BEFORE) and colours
// each frame by the change of its share of the total: red grew, blue shrank, white equal.
// Shares are of each profile's own total, so runs of different lengths compare.
#pragma once

#include <string>

#include "flamestream/pprofutil/stacks.h"

namespace flamestream::pprofutil {

std::string DiffFlameGraphHtml(const StackSet& before, const StackSet& after,
                               const std::string& title);

// The embedded tree, for tests: {"bt":B,"at":A,"unit":"..","maxd":x,"root":[name,b,a,[...]]}.
std::string DiffTreeJson(const StackSet& before, const StackSet& after);

// Escapes `s` for use inside a JSON string that sits in an HTML <script> element.
std::string JsonEscape(const std::string& s);

}  // namespace flamestream::pprofutil
