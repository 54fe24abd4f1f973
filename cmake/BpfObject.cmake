# bpf_object(<name> <source.bpf.c> [HEADERS ...]): compiles a CO-RE BPF program with clang and
# generates its libbpf skeleton, exposed as the INTERFACE target `<name>_skel`:
#
#   bpf_object(profile profile.bpf.c HEADERS profile.h)
#   target_link_libraries(fs_bpf PRIVATE profile_skel)   # then #include "profile.skel.h"
#
# vmlinux.h comes from the build host's BTF (/sys/kernel/btf/vmlinux) through bpftool, so the
# program sees exactly the running kernel's types. Without BTF or bpftool we fall back to the
# trimmed, committed bpf/vmlinux_fallback.h: its structs are preserve_access_index, so CO-RE
# relocations still fit them to whichever kernel loads the program.

find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
set(FS_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH "Kernel BTF used to generate vmlinux.h")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(FS_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(FS_BPF_ARCH arm64)
else()
  message(FATAL_ERROR "bpf_object: unsupported architecture ${CMAKE_SYSTEM_PROCESSOR}")
endif()

# One vmlinux.h per build tree, shared by every BPF program.
function(fs_bpf_vmlinux_header out_dir_var)
  set(dir ${CMAKE_BINARY_DIR}/bpf/vmlinux)
  set(header ${dir}/vmlinux.h)
  if(NOT TARGET fs_bpf_vmlinux)
    if(EXISTS ${FS_VMLINUX_BTF})
      add_custom_command(
        OUTPUT ${header}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
        COMMAND ${BPFTOOL} btf dump file ${FS_VMLINUX_BTF} format c > ${header}.tmp
        COMMAND ${CMAKE_COMMAND} -E rename ${header}.tmp ${header}
        DEPENDS ${FS_VMLINUX_BTF}
        COMMENT "Generating vmlinux.h from ${FS_VMLINUX_BTF}"
        VERBATIM)
    else()
      message(STATUS "bpf_object: ${FS_VMLINUX_BTF} missing, using bpf/vmlinux_fallback.h")
      add_custom_command(
        OUTPUT ${header}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
        COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/bpf/vmlinux_fallback.h ${header}
        DEPENDS ${CMAKE_SOURCE_DIR}/bpf/vmlinux_fallback.h
        COMMENT "Using the committed trimmed vmlinux.h"
        VERBATIM)
    endif()
    add_custom_target(fs_bpf_vmlinux DEPENDS ${header})
  endif()
  set(${out_dir_var} ${dir} PARENT_SCOPE)
endfunction()

function(bpf_object name source)
  cmake_parse_arguments(ARG "" "" "HEADERS" ${ARGN})
  fs_bpf_vmlinux_header(vmlinux_dir)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${source})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/${name})
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  set(deps ${src} ${vmlinux_dir}/vmlinux.h)
  foreach(h ${ARG_HEADERS})
    list(APPEND deps ${CMAKE_CURRENT_SOURCE_DIR}/${h})
  endforeach()
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${FS_BPF_ARCH}
            -Wall -Werror -I${vmlinux_dir} -I${CMAKE_CURRENT_SOURCE_DIR}
            -c ${src} -o ${obj}
    DEPENDS ${deps}
    COMMENT "Compiling BPF program ${name}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "Generating BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_build DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  # The skeleton plus the shared event header (bpf/<name>.h).
  # SYSTEM: the generated skeleton is C and does not promise -Wpedantic cleanliness in C++.
  target_include_directories(${name}_skel SYSTEM INTERFACE ${out_dir} ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF PkgConfig::LIBELF ZLIB::ZLIB)
  add_dependencies(${name}_skel ${name}_skel_build)
endfunction()
