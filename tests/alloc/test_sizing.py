"""Zone sizing against figures worked out by hand from the kernel's formulas.

min_free_kbytes = int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144]
(mm/page_alloc.c init_per_zone_wmark_min); a zone's min is its share of
min_free_kbytes in pages; the watermark gap is max(min / 4, managed *
watermark_scale_factor / 10000) (scale 10); low = min + gap, high = min +
2 * gap; the lower zone keeps pages_of_higher_zones / 256 in reserve
(sysctl_lowmem_reserve_ratio for DMA32); pcp batch is zone_batchsize() of
5.13 and high = 6 * batch. The default layout gives DMA32 a quarter of the
arena. Both implementations must give these numbers: the pure twin has its
own sizing code, so a mistake in either fails here.
"""
import pytest

#: arena pages -> (min_free_kbytes, {zone: (managed, (min, low, high), batch)}, DMA32 reserve vs Normal)
WORKED = {
    # 16 pages = 64 kB: int_sqrt(1024) = 32 kB, clamped up to 128 kB = 32 pages; DMA32 4 + Normal 12
    16: (128, {"DMA32": (4, (8, 10, 12), 1), "Normal": (12, (24, 30, 36), 1)}, 0),
    # 64 MiB = 65536 kB: int_sqrt(1048576) = 1024 kB = 256 pages; 4096 + 12288
    #   DMA32 min 256*4096/16384 = 64, gap max(16, 4) = 16; Normal 192, gap max(48, 12) = 48
    #   batch: 4096>>10 = 4, /4 = 1, rdpow2(1) - 1 = 0 -> 1; 12288>>10 = 12, /4 = 3, rdpow2(4) - 1 = 3
    16384: (1024, {"DMA32": (4096, (64, 80, 96), 1), "Normal": (12288, (192, 240, 288), 3)}, 48),
    # 1 GiB = 1048576 kB: int_sqrt(16777216) = 4096 kB = 1024 pages; 65536 + 196608
    #   DMA32 min 256, gap max(64, 65) = 65; Normal 768, gap max(192, 196) = 196
    #   batch: 64/4 = 16, rdpow2(24) - 1 = 15; 192/4 = 48, rdpow2(72) - 1 = 63 (the kernel's 63)
    262144: (4096, {"DMA32": (65536, (256, 321, 386), 15), "Normal": (196608, (768, 964, 1160), 63)}, 768),
    # 4 GiB = 4194304 kB: int_sqrt(67108864) = 8192 kB = 2048 pages; 262144 + 786432
    #   DMA32 min 512, gap max(128, 262) = 262; Normal 1536, gap max(384, 786) = 786
    #   batch: 256 -> capped at 1 MiB / 4 KiB = 256, /4 = 64, rdpow2(96) - 1 = 63
    1048576: (8192, {"DMA32": (262144, (512, 774, 1036), 63), "Normal": (786432, (1536, 2322, 3108), 63)},
              3072),
}


@pytest.mark.parametrize("pages", sorted(WORKED))
def test_formulas_give_the_worked_figures(impl, pages):
    mfk, zones, reserve = WORKED[pages]
    layout = impl.default_zones(pages)
    assert [(n, p) for n, p in layout] == [(z, zones[z][0]) for z in ("DMA32", "Normal")]
    got_mfk, marks, reserves = impl.compute_watermarks([p for _, p in layout])
    assert got_mfk == mfk
    assert [tuple(m) for m in marks] == [zones["DMA32"][1], zones["Normal"][1]]
    assert reserves[0][1] == reserve and reserves[1][1] == 0
    assert [impl.zone_batchsize(p) for _, p in layout] == [zones["DMA32"][2], zones["Normal"][2]]


@pytest.mark.parametrize("pages", [16384, 262144])
def test_allocator_reports_the_worked_figures(impl, pages):
    mfk, zones, _ = WORKED[pages]
    a = impl.Allocator(arena_pages=pages)
    st = a.stats()
    assert st["min_free_kbytes"] == mfk
    for name, (managed, (lo_min, low, high), batch) in zones.items():
        z = st["zones"][name]
        assert z["managed"] == managed
        assert (z["watermarks"]["min"], z["watermarks"]["low"], z["watermarks"]["high"]) == (lo_min, low, high)
        assert z["batch"] == batch and z["high"] == 6 * batch


def test_min_free_kbytes_clamps_at_the_top(impl):
    # 2^31 pages = 2^33 kB: int_sqrt(2^37) = 370727 kB, clamped to 262144 kB = 65536 pages
    mfk, marks, _ = impl.compute_watermarks([1 << 31])
    assert mfk == 262144 and marks[0][0] == 65536


def test_explicit_min_free_kbytes_and_scale_factor(impl):
    # 16384 pages, min_free_kbytes 4096 -> 1024 pages; scale 100: gap max(256, 163) = 256
    mfk, marks, _ = impl.compute_watermarks([16384], 4096, 100)
    assert mfk == 4096 and tuple(marks[0]) == (1024, 1280, 1536)
