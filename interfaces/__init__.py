"""Nipype interfaces wrapping the dnnrsa core functions (load, call one function, save)."""
