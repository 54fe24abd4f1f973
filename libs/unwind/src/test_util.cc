#include "test_util.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

namespace flamestream::unwind::testing {
namespace {

struct Closer {
  void operator()(Elf* e) const { elf_end(e); }
};

template <typename F>
void ForEachSection(const std::string& path, F f) {
  elf_version(EV_CURRENT);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  {
    std::unique_ptr<Elf, Closer> elf(elf_begin(fd, ELF_C_READ_MMAP, nullptr));
    size_t shstrndx = 0;
    if (elf && elf_getshdrstrndx(elf.get(), &shstrndx) == 0) {
      for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn != nullptr;
           scn = elf_nextscn(elf.get(), scn)) {
        GElf_Shdr shdr;
        if (gelf_getshdr(scn, &shdr) == nullptr) continue;
        const char* name = elf_strptr(elf.get(), shstrndx, shdr.sh_name);
        if (!f(elf.get(), scn, shdr, name != nullptr ? name : "")) break;
      }
    }
  }
  ::close(fd);
}

bool IsHex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::optional<Range> FindSymbol(const std::string& path, const std::string& name) {
  std::optional<Range> found;
  ForEachSection(path, [&](Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr, const std::string&) {
    if (shdr.sh_type != SHT_SYMTAB && shdr.sh_type != SHT_DYNSYM) return true;
    Elf_Data* data = elf_getdata(scn, nullptr);
    const size_t n = shdr.sh_entsize != 0 ? shdr.sh_size / shdr.sh_entsize : 0;
    for (size_t i = 0; data != nullptr && i < n; ++i) {
      GElf_Sym sym;
      if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) break;
      const char* s = elf_strptr(elf, shdr.sh_link, sym.st_name);
      if (s != nullptr && name == s && sym.st_value != 0) {
        found = Range{sym.st_value, sym.st_value + sym.st_size, 0};
        return false;
      }
    }
    return true;
  });
  return found;
}

std::optional<Range> FindSection(const std::string& path, const std::string& name) {
  std::optional<Range> found;
  ForEachSection(path, [&](Elf*, Elf_Scn*, const GElf_Shdr& shdr, const std::string& n) {
    if (n != name) return true;
    found = Range{shdr.sh_addr, shdr.sh_addr + shdr.sh_size, shdr.sh_offset};
    return false;
  });
  return found;
}

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// readelf prints, per section:
//   00000000 0000000000000014 00000000 CIE "zR" cf=1 df=-8 ra=16
//      LOC           CFA      ra
//   0000000000000000 rsp+8    c-8
//   00000018 0000000000000024 0000001c FDE cie=00000000 pc=0000000000026000..0000000000026360
//      LOC           CFA      rbx   rbp   ra
//   0000000000026000 rsp+16   u     u     c-8
// An FDE without instructions prints no table: it has its CIE's initial rules.
std::vector<ReadelfFde> ReadelfFrames(const std::string& path, const std::string& section) {
  const std::string text =
      RunCommand("readelf -wN --debug-dump=frames-interp '" + path + "' 2>/dev/null");
  std::vector<ReadelfFde> fdes;
  std::map<std::string, ReadelfRow> cie_initial;  // CIE offset -> its (last) initial row
  std::istringstream in(text);
  std::string line;
  bool in_section = false;
  std::string cie;  // offset of the CIE being read, "" when reading an FDE
  std::vector<std::string> columns;
  std::string fde_cie;
  auto finish_fde = [&] {
    if (!fdes.empty() && fdes.back().rows.empty() && cie_initial.count(fde_cie) != 0) {
      ReadelfRow row = cie_initial[fde_cie];
      row.loc = fdes.back().start;
      fdes.back().rows.push_back(row);
    }
  };
  while (std::getline(in, line)) {
    if (line.rfind("Contents of the ", 0) == 0) {
      finish_fde();
      // "Contents of the .eh_frame section:" or "... section (loaded from FILE):"
      in_section = line.rfind("Contents of the " + section + " section", 0) == 0;
      continue;
    }
    if (!in_section) continue;
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) {
      // A register rule prints as "r9 (r9)": one column.
      if (w[0] == '(' && !f.empty()) {
        f.back() += " " + w;
      } else {
        f.push_back(w);
      }
    }
    if (f.empty()) continue;
    if (f.size() >= 4 && IsHex(f[0], 8) && f[3] == "CIE") {
      finish_fde();
      cie = f[0];
      columns.clear();
    } else if (f.size() >= 6 && IsHex(f[0], 8) && f[3] == "FDE") {
      finish_fde();
      cie.clear();
      columns.clear();
      fde_cie = f[4].substr(4);  // cie=XXXXXXXX
      const std::string pc = f[5].substr(3);
      const size_t dots = pc.find("..");
      fdes.push_back({std::stoull(pc.substr(0, dots), nullptr, 16),
                      std::stoull(pc.substr(dots + 2), nullptr, 16),
                      {}});
    } else if (f[0] == "LOC") {
      columns = f;
    } else if (IsHex(f[0], 16) && f.size() == columns.size()) {
      ReadelfRow row;
      row.loc = std::stoull(f[0], nullptr, 16);
      for (size_t i = 1; i < f.size(); ++i) {
        if (columns[i] == "CFA") row.cfa = f[i];
        if (columns[i] == "ra") row.ra = f[i];
        if (columns[i] == "rbp") row.rbp = f[i];
      }
      if (!cie.empty()) {
        cie_initial[cie] = row;
      } else if (!fdes.empty()) {
        fdes.back().rows.push_back(row);
      }
    }
  }
  finish_fde();
  return fdes;
}

LoadedLibc FindLoadedLibc() {
  void* handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return {};
  link_map* map = nullptr;
  LoadedLibc out;
  if (dlinfo(handle, RTLD_DI_LINKMAP, static_cast<void*>(&map)) == 0 && map != nullptr &&
      map->l_name != nullptr) {
    out = {map->l_name, static_cast<uintptr_t>(map->l_addr)};
  }
  dlclose(handle);
  return out;
}

}  // namespace flamestream::unwind::testing
