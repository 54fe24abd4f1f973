#include "flamestream/pprofutil/builder.h"

#include "flamestream/common/strings.h"

namespace flamestream::pprofutil {

ProfileBuilder::ProfileBuilder(const std::string& type, const std::string& unit) {
  Intern("");  // string_table[0] must be ""
  auto* st = profile_.add_sample_type();
  st->set_type(Intern(type));
  st->set_unit(Intern(unit));
}

int64_t ProfileBuilder::Intern(const std::string& s) {
  auto [it, inserted] = strings_.try_emplace(s, profile_.string_table_size());
  if (inserted) profile_.add_string_table(s);
  return it->second;
}

uint64_t ProfileBuilder::FunctionId(const std::string& name) {
  auto [it, inserted] = functions_.try_emplace(name, functions_.size() + 1);
  if (inserted) {
    auto* f = profile_.add_function();
    f->set_id(it->second);
    f->set_name(Intern(name));
    f->set_system_name(Intern(name));
  }
  return it->second;
}

ProfileBuilder& ProfileBuilder::Add(const std::vector<std::vector<std::string>>& locations,
                                    int64_t value, const Labels& labels) {
  auto* sample = profile_.add_sample();
  for (const auto& functions : locations) {
    // A new location per use keeps this simple; pprof readers do not require sharing.
    auto* loc = profile_.add_location();
    loc->set_id(static_cast<uint64_t>(profile_.location_size()));
    loc->set_address(0x1000 * loc->id());
    for (const std::string& f : functions) {
      loc->add_line()->set_function_id(FunctionId(f));
    }
    sample->add_location_id(loc->id());
  }
  sample->add_value(value);
  for (const auto& [k, v] : labels) {
    auto* l = sample->add_label();
    l->set_key(Intern(k));
    l->set_str(Intern(v));
  }
  return *this;
}

ProfileBuilder& ProfileBuilder::AddFolded(const std::string& stack, int64_t value,
                                          const Labels& labels) {
  std::vector<std::string> frames = common::Split(stack, ';');
  std::vector<std::vector<std::string>> locations;
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) locations.push_back({*it});
  return Add(locations, value, labels);
}

ProfileBuilder& ProfileBuilder::AddUnsymbolized(const std::string& file, uint64_t start,
                                                uint64_t offset, int64_t value) {
  auto* m = profile_.add_mapping();
  m->set_id(static_cast<uint64_t>(profile_.mapping_size()));
  m->set_memory_start(start);
  m->set_memory_limit(start + 0x100000);
  m->set_filename(Intern(file));
  auto* loc = profile_.add_location();
  loc->set_id(static_cast<uint64_t>(profile_.location_size()));
  loc->set_mapping_id(m->id());
  loc->set_address(start + offset);
  auto* sample = profile_.add_sample();
  sample->add_location_id(loc->id());
  sample->add_value(value);
  return *this;
}

}  // namespace flamestream::pprofutil
