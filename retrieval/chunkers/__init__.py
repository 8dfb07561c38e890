"""Chunkers: each turns a document into character spans that tile it."""
