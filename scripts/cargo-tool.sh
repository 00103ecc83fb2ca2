# Sourced: `install_cargo_tool crate version binary` installs a pinned cargo tool once.
#
# Tools go to a per-version folder of a shared cache (TOOLS_DIR), so a fresh clone reuses them
# and two versions never overwrite each other.
TOOLS_DIR=${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/openai-edge-proxy/tools}

install_cargo_tool() { # crate version binary
  local root="$TOOLS_DIR/$1-$2"
  if [ "$("$root/bin/$3" --version 2>/dev/null | awk '{ print $NF }')" != "$2" ]; then
    echo "==> installing $1 $2 into $root (a few minutes, once)" >&2
    cargo install --quiet --locked --root "$root" "$1" --version "$2"
  fi
}
