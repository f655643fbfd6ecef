"""Persistence beside the engine: the snapshot file (Redis's RDB format) and its schedule.

``rdb`` encodes and decodes the file (sans-IO), ``encodings`` the compact blobs redis-server
writes inside it, ``snapshot`` writes and loads the file and moves keys between it and the
engine, ``saving`` decides when the store saves (stop, interval, request) and reports it.
"""
