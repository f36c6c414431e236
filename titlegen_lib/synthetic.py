"""SYNTHETIC data in the exact AmazonTitles-1.3MM format (JSON lines: uid, title, content, target_ind, target_rel).

Nothing here is real: every uid starts with "SYN", titles and descriptions come from templates, dirty cases included.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import tempfile
from dataclasses import dataclass, fields
from functools import lru_cache
from json.encoder import encode_basestring
from operator import itemgetter
from pathlib import Path
from random import Random
from typing import Any, Callable, Iterator

UID_PREFIX = "SYN"
UID_SPACE = 10_000_000
N_LABELS = 1_305_265
MAX_CONTENT_CHARS = 20_000
LONG_MIN_CHARS = 3_000
PLACEHOLDERS = ("VHS Tape", "Audio CD", "N/A", "DVD", "Paperback", "Hardcover", "n/a", "NA", "Kindle Edition", ".")
MALFORMED_KINDS = ("truncated", "array", "title_null", "title_number", "title_list", "missing_content")

_UID_MULT = 3_767_693
_UID_ADD = 1_234_567


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: the number of lines, the seed and the rate of each dirty case.

    Rates "of records" count the lines that are neither exact duplicates nor malformed."""

    n_records: int = 2000  # lines written, duplicates and malformed lines included
    seed: int = 0
    empty_content_rate: float = 0.30  # of records: title kept, content ""
    empty_title_rate: float = 0.05  # of records: title "", content kept
    both_empty_rate: float = 0.05  # of records
    html_rate: float = 0.25  # of records with a description: tags, entities, odd whitespace, control characters
    boilerplate_rate: float = 0.10  # of records with a description: "--This text refers to ..." (book-like ones)
    placeholder_rate: float = 0.03  # of records: content "VHS Tape", "N/A", ...
    title_as_content_rate: float = 0.01  # of records
    duplicate_rate: float = 0.02  # exact duplicate lines
    duplicate_title_rate: float = 0.03  # of records: an earlier title, new uid, content of another length
    long_content_rate: float = 0.01  # of records: 3,000 to 20,000 characters
    malformed_rate: float = 0.0  # of lines: bad JSON, an array, a non-string title, no content key

    def __post_init__(self) -> None:
        if not isinstance(self.n_records, int) or not 0 <= self.n_records <= UID_SPACE:
            raise ValueError(f"n_records must be an int in [0, {UID_SPACE:,}], got {self.n_records!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        for f in fields(self):
            if f.name.endswith("_rate"):
                value = getattr(self, f.name)
                if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be in [0, 1], got {value!r}")
        if self._kind_total() > 1.0 + 1e-9:
            raise ValueError(f"the per-record kind rates add up to {self._kind_total():.3f} > 1")
        if self.duplicate_rate + self.malformed_rate > 1.0 + 1e-9:
            raise ValueError("duplicate_rate + malformed_rate must be <= 1")

    def _kind_total(self) -> float:
        return (self.both_empty_rate + self.empty_title_rate + self.empty_content_rate + self.placeholder_rate
                + self.title_as_content_rate + self.long_content_rate + self.duplicate_title_rate)


def _text_case(phrase: str) -> str:
    """A title-case phrase as it reads inside a sentence ("12-Cup Programmable" -> "12-cup programmable")."""
    def word(part: str) -> str:
        keep = part in ("Bluetooth", "Wi", "Fi", "C", "Python", "Spanish") or (part.isupper() and len(part) > 1)
        return part if keep or any(c.isdigit() for c in part) else part.lower()

    return " ".join("-".join(word(p) for p in w.split("-")) for w in phrase.split(" "))


# ---------------------------------------------------------------- vocabulary

_GOODS_OPENERS = (
    "The {b}{c} {m} {n} is made for {u}.",
    "This {b}{c} {m} {n} is designed for {u}.",
    "Built for {u}, the {b}{c} {m} {n} pairs {f1} with {f2}.",
    "Meet the {b}{c} {m} {n} \u2014 {f1} and {f2} in one well-made package.",
    "With the {b}{c} {m} {n}, {u} just got easier.",
    "Designed with {u} in mind, this {b}{c} {m} {n} comes with {f1}.",
)
_GOODS_BODIES = (
    "Features include {f1}, {f2}, and {f3}.",
    "It offers {f2}, so it is ready for {u}.",
    "With {f3}, this {n} is easy to use every day.",
    "Customers appreciate {f1} and the attention to detail.",
    "Every {b} product is tested for quality and durability before it ships.",
    "It's a practical gift for anyone who needs a reliable {n}.",
    "Unlike basic models, this {n} includes {f3}.",
)
_GOODS_CLOSERS = (
    "Backed by a one-year limited warranty.",
    "Backed by a two-year limited warranty from {b}.",
    "Satisfaction guaranteed or your money back within 30 days.",
    "Colors may vary slightly from the photos because of screen settings.",
    "Ships in recyclable, frustration-free packaging.",
)
_PLURAL_VERBS = {"is": "are", "includes": "include", "fits": "fit", "arrives": "arrive", "stores": "store",
                 "keeps": "keep", "comes": "come", "pairs": "pair"}
_PLURAL_RULES = (
    (re.compile(r"\{n\}((?: from \{b\})?) (" + "|".join(_PLURAL_VERBS) + r")\b"),
     lambda m: f"{{n}}{m.group(1)} {_PLURAL_VERBS[m.group(2)]}"),
    (re.compile(r"\b([Tt])his ((?:\{[bcm]\} ?)*)\{n\}"), lambda m: f"{m.group(1)}hese {m.group(2)}{{n}}"),
    (re.compile(r"\ba reliable \{n\}"), lambda m: "reliable {n}"),
    (re.compile(r"^It offers (\{f2\}), so it is"), lambda m: f"They offer {m.group(1)}, so they are"),
)


def _plural(template: str) -> str:
    """The same sentence for a plural product noun ("this {n} is" -> "these {n} are")."""
    for pattern, repl in _PLURAL_RULES:
        template = pattern.sub(repl, template)
    return template


# category: (weight, brands, variant titles, variant sentence template, extra body sentences, products)
# product: (noun, modifiers[, features (>= 3), uses]); without its own features and uses, its category's below
_GOODS: dict[str, tuple[int, tuple[str, ...], tuple[str, ...], str, tuple[str, ...], tuple[tuple[Any, ...], ...]]] = {
    "electronics": (9, (
        "Voltra", "Auralis", "Kestrel Audio", "Nexon", "Brightwave", "Corvex", "Lumio", "Sonique", "Zentrix",
        "Halcyon Labs", "Orbitek", "Pulsar", "Veridian", "Quantix", "Arcwell"),
        ("Black", "White", "Silver", "Space Gray", "Navy Blue", "Red"),
        "This one comes in {v}.",
        ("The compact design slips easily into a backpack or desk drawer.",
         "A status light shows at a glance when the {n} is powered and ready.",
         "It works with most phones, tablets, and laptops.",
         "Setup takes only a few minutes, and clear instructions are included."),
        (("Headphones", ("Wireless Over-Ear", "Noise Cancelling", "Bluetooth On-Ear", "Foldable Studio"),
          ("40 hours of battery life", "plush memory-foam ear cushions", "a built-in microphone for calls",
           "fast USB-C charging", "a foldable frame that fits in any bag"),
          ("commuting, travel, and long listening sessions", "focused work in noisy offices")),
         ("Portable Speaker", ("Waterproof Bluetooth", "Rugged Outdoor", "Mini Wireless"),
          ("360-degree sound", "an IPX7 waterproof rating", "12 hours of playtime", "a built-in carabiner",
           "stereo pairing with a second speaker"),
          ("pool parties, camping, and beach days", "backyard gatherings")),
         ("Wall Charger", ("20W USB-C Fast", "Dual-Port", "65W Compact"),
          ("smart power distribution", "protection against overheating and short circuits",
           "a foldable plug", "enough power for a laptop and a phone at once"),
          ("home, office, and travel", "charging several devices overnight")),
         ("HDMI Cable", ("6 ft High-Speed 4K", "Braided 10 ft", "8K Ultra High-Speed"),
          ("gold-plated connectors", "a tangle-free braided jacket", "support for 4K at 120Hz",
           "an audio return channel", "reinforced strain relief"),
          ("home theaters and gaming consoles", "connecting a laptop to a TV or monitor")),
         ("Smart Plug", ("Wi-Fi", "Mini Outdoor", "2-Pack Voice Control"),
          ("app scheduling", "energy monitoring", "voice assistant support", "an away mode that mimics activity"),
          ("automating lamps, fans, and holiday lights", "smart homes of any size")),
         ("Wireless Mouse", ("Ergonomic", "Silent Click", "Rechargeable"),
          ("a contoured grip", "near-silent buttons", "adjustable DPI settings", "a tiny USB receiver",
           "months of use on a single charge"),
          ("long days at the desk", "laptops and home offices")),
         ("Power Bank", ("10000mAh Portable", "Slim 20000mAh", "Magnetic Wireless"),
          ("two USB ports", "an LED charge indicator", "pass-through charging", "a slim aluminum shell"),
          ("flights, road trips, and festivals", "keeping a phone alive all day")),
         ("Dash Cam", ("1080p Front", "4K Dual", "Mini Wi-Fi"),
          ("a wide 170-degree lens", "loop recording", "night vision", "a G-sensor that locks crash footage"),
          ("daily driving and ride-share work", "protecting new drivers")))),
    "kitchen": (8, (
        "Hartwell", "Copperlane", "Bellhaven", "Greystone Home", "Kitchora", "Maison \u00c9lan", "Ridgeway",
        "Sorrento", "Tidewater", "Oakhurst"),
        ("Black", "Stainless Steel", "Red", "White", "Sage Green", "Cream"),
        "It comes in a {v} finish.",
        ("All removable parts are dishwasher safe for quick cleanup.",
         "A compact footprint saves counter space and stores easily in a cabinet.",
         "Food-safe, BPA-free materials give you peace of mind.",
         "Whether you are cooking for one or hosting a crowd, the {b} {n} keeps up.",
         "Setup takes only a few minutes, and clear instructions are included."),
        (("Coffee Maker", ("12-Cup Programmable", "Single-Serve", "Thermal Carafe"),
          ("a 24-hour programmable timer", "a pause-and-serve feature", "a reusable mesh filter",
           "an automatic shut-off", "a keep-warm plate"),
          ("busy mornings and weekend brunches", "home kitchens and small offices")),
         ("Blender", ("High-Speed Countertop", "Personal", "1200-Watt Professional"),
          ("stainless steel blades", "a 64-ounce pitcher", "five preset programs", "a pulse setting"),
          ("smoothies, soups, and frozen drinks", "quick breakfasts on the go")),
         ("Toaster", ("2-Slice Stainless Steel", "4-Slice Wide-Slot", "Retro"),
          ("extra-wide slots for bagels", "seven shade settings", "a removable crumb tray",
           "defrost and reheat buttons"),
          ("family breakfasts", "small kitchens and apartments")),
         ("Frying Pan", ("10-Inch Nonstick", "12-Inch Ceramic", "Cast Iron"),
          ("a scratch-resistant coating", "a stay-cool handle", "even heat distribution",
           "compatibility with induction cooktops"),
          ("eggs, pancakes, and stir-fries", "everyday cooking")),
         ("Electric Kettle", ("1.7-Liter", "Gooseneck", "Glass"),
          ("rapid boil technology", "auto shut-off and boil-dry protection", "a 360-degree swivel base",
           "an easy-fill lid"),
          ("tea, instant oatmeal, and pour-over coffee", "offices and dorm rooms")),
         ("Food Storage Containers", ("24-Piece Glass", "BPA-Free Plastic", "Stackable"),
          ("airtight locking lids", "oven-safe glass", "stackable shapes that save space",
           "freezer-to-microwave convenience"),
          ("meal prep and leftovers", "organized pantries")),
         ("Air Fryer", ("5.8-Quart Digital", "Compact 2-Quart", "Dual-Basket"),
          ("eight one-touch presets", "a nonstick basket", "up to 85 percent less oil",
           "a shake reminder"),
          ("crispy fries and wings without the mess", "weeknight dinners")),
         ("Chef's Knife", ("8-Inch", "Japanese Steel", "Forged"),
          ("a razor-sharp high-carbon blade", "a full-tang handle", "a comfortable ergonomic grip",
           "a protective blade guard"),
          ("slicing, dicing, and mincing", "home cooks who want a sharper edge")))),
    "home": (6, (
        "Willowmere", "Harbor Lane", "Stonebridge", "Ivy & Oak Home", "Cozyway", "Lindenhurst", "Meadowbrook",
        "Driftwood Living"),
        ("Gray", "Ivory", "Charcoal", "Blush Pink", "Navy", "Sage"),
        "Shown here in {v}.",
        ("It pairs well with modern, rustic, and farmhouse decor.",
         "Spot clean or follow the care label to keep it looking new.",
         "The {n} arrives ready to use right out of the box."),
        (("Throw Blanket", ("Soft Sherpa Fleece", "Chunky Knit", "Lightweight Cotton"),
          ("a plush double-sided weave", "machine-washable fabric", "a generous 50 by 60 inch size",
           "fade-resistant color"),
          ("movie nights on the couch", "chilly evenings")),
         ("Bath Towel Set", ("6-Piece Cotton", "Quick-Dry", "Luxury Hotel"),
          ("600 GSM cotton", "soft, absorbent loops", "double-stitched hems", "two bath towels and four hand towels"),
          ("guest bathrooms and everyday use", "spa-like mornings")),
         ("Table Lamp", ("Ceramic", "Modern Touch-Control", "Rustic Wood"),
          ("a linen drum shade", "three brightness levels", "a built-in USB port", "a weighted base"),
          ("bedside tables and reading corners", "living rooms")),
         ("Shower Curtain", ("Waffle Weave", "Botanical Print", "Extra-Long"),
          ("rust-proof grommets", "a water-repellent finish", "a weighted hem", "machine-washable fabric"),
          ("bathroom refreshes", "rental apartments")),
         ("Storage Baskets", ("Woven 3-Pack", "Collapsible Fabric", "Wire"),
          ("sturdy handles", "collapsible sides", "three nesting sizes", "a removable liner"),
          ("closets, shelves, and nurseries", "tidy living rooms")),
         ("Wall Clock", ("Silent 12-Inch", "Farmhouse", "Minimalist"),
          ("a silent sweep movement", "large easy-to-read numbers", "a glass lens", "a single AA battery"),
          ("kitchens, offices, and classrooms", "living room walls")))),
    "toys": (6, (
        "Tinkerton", "Little Sprout", "Brickwell", "Funhaven", "Playwise", "Wobblebee", "Starlight Toys",
        "Jumbleworks"),
        ("Ages 3+", "Ages 4+", "Ages 6+", "Ages 8+"),
        "Recommended for {v}.",
        ("All materials meet current toy safety standards.",
         "It makes a wonderful birthday or holiday gift.",
         "Screen-free play that builds creativity and fine motor skills."),
        (("Building Blocks Set", ("500-Piece", "Classic Creative", "Castle")),
         ("Wooden Train Set", ("52-Piece", "Deluxe", "Figure-Eight")),
         ("Plush Teddy Bear", ("Giant 36-Inch", "Classic", "Cuddly")),
         ("Remote Control Car", ("Off-Road", "High-Speed Stunt", "Monster Truck")),
         ("Magnetic Tiles", ("100-Piece", "Starter", "Glow-in-the-Dark")),
         ("Art Kit", ("150-Piece", "Deluxe Drawing", "Watercolor")),
         ("Board Game", ("Family Strategy", "Cooperative", "Classic Word")))),
    "clothing": (7, (
        "Northpeak", "Wildmere", "Cotton Row", "Urban Thread", "Saltmarsh", "Bayline", "Fenwick", "Alder Co."),
        ("Navy, Large", "Black, Medium", "Heather Gray, Small", "Olive, X-Large", "White, Medium",
         "Burgundy, Large", "Charcoal, XX-Large", "Royal Blue, Small"),
        "Shown in {v}.",
        ("Machine wash cold and tumble dry low.",
         "True to size; see the size chart for exact measurements.",
         "A wardrobe staple you will reach for again and again."),
        (("Polo Shirt", ("Men's Classic Fit Cotton", "Women's Performance", "Men's Slim Fit Pique")),
         ("T-Shirt", ("Men's Crew Neck", "Women's V-Neck", "Unisex Organic Cotton")),
         ("Hoodie", ("Men's Fleece Pullover", "Women's Zip-Up", "Unisex Heavyweight")),
         ("Jeans", ("Men's Slim Fit Stretch", "Women's High-Rise Skinny", "Men's Relaxed Fit")),
         ("Rain Jacket", ("Women's Waterproof", "Men's Packable", "Lightweight Hooded")),
         ("Wool Socks", ("6-Pack Merino", "Hiking Cushioned", "Men's Crew")))),
    "beauty": (5, (
        "Lumi\u00e8re", "Velvetine", "Pure Botanica", "Aurelle", "Glowhaus", "Saltwater Skin", "Fleur de Lune"),
        ("8 fl oz", "1.7 oz", "16 fl oz", "3.4 fl oz", "1 fl oz"),
        "Net contents: {v}.",
        ("Dermatologist tested and free of parabens.",
         "Cruelty-free and never tested on animals.",
         "Suitable for all skin types, including sensitive skin."),
        (("Face Moisturizer", ("Hydrating Daily", "Oil-Free", "Night Repair")),
         ("Shampoo", ("Sulfate-Free Argan Oil", "Clarifying", "Volumizing")),
         ("Face Serum", ("Vitamin C Brightening", "Hyaluronic Acid", "Retinol")),
         ("Mineral Sunscreen", ("SPF 50", "Tinted SPF 30", "Water-Resistant")),
         ("Body Lotion", ("Shea Butter", "Unscented", "Lavender")),
         ("Lip Balm", ("Tinted", "Overnight", "Peppermint")))),
    "tools": (5, (
        "Forgeline", "Steelhand", "Torqmax", "Ridgeback Tools", "Granite Works", "Keystone Pro", "Anvilcraft"),
        ("Yellow", "Orange", "Red", "Black"),
        "Finished in {v}.",
        ("It is built to handle years of jobsite abuse.",
         "The {n} stores neatly in the included case.",
         "Ideal for contractors and weekend DIYers alike."),
        (("Cordless Drill Driver", ("20V", "12V Compact", "Brushless 20V")),
         ("Socket Set", ("40-Piece", "Metric and SAE 108-Piece", "Drive")),
         ("Tape Measure", ("25 ft", "Magnetic 30 ft", "Compact 16 ft")),
         ("Claw Hammer", ("16 oz", "Fiberglass", "Steel")),
         ("Screwdriver Set", ("Magnetic 12-Piece", "Precision", "Insulated")),
         ("Work Light", ("LED Rechargeable", "Magnetic", "Tripod")))),
    "sports": (4, (
        "Trailmark", "Summit Gear", "Peakline", "Swiftstride", "Coastline Outdoors", "Ember Ridge"),
        ("Black", "Teal", "Purple", "Forest Green", "Orange"),
        "This listing is for the {v} color.",
        ("It is light enough to carry anywhere.",
         "Cleans up quickly with a damp cloth.",
         "A great pick for beginners and seasoned athletes alike."),
        (("Yoga Mat", ("Non-Slip 6mm", "Extra-Thick", "Travel")),
         ("Water Bottle", ("32 oz Insulated Stainless Steel", "Leakproof", "Collapsible")),
         ("Camping Tent", ("4-Person", "Instant Pop-Up", "Ultralight 2-Person")),
         ("Sleeping Bag", ("Mummy", "Cold Weather", "Lightweight")),
         ("Resistance Bands", ("Set of 5", "Fabric", "Heavy-Duty")),
         ("Hiking Backpack", ("40L", "Waterproof 30L", "Daypack")))),
    "pet": (3, (
        "Barkley", "Furwell", "Tailwind Pet", "Meadow Paws", "Happy Whiskers", "Kibble & Co."),
        ("Brown", "Gray", "Blue", "Pink"),
        "This one comes in {v}.",
        ("Made with pet-safe, non-toxic materials.",
         "Your dog or cat will love it, or your money back."),
        (("Dog Bed", ("Orthopedic Large", "Calming Donut", "Elevated")),
         ("Cat Scratching Post", ("32-Inch Sisal", "Tall", "Corner")),
         ("Dog Leash", ("6 ft Reflective", "Hands-Free", "Rope")),
         ("Pet Grooming Brush", ("Self-Cleaning Slicker", "Deshedding", "Double-Sided")),
         ("Pet Water Fountain", ("2.5L Quiet", "Stainless Steel", "Cordless")))),
}

# Features and uses for the products listed above without them (toys, clothing, beauty, tools, sports, pet).
_CATEGORY_FEATURES = {
    "toys": (("colorful, chunky pieces sized for small hands", "a sturdy storage box", "an illustrated idea guide",
              "rounded edges and non-toxic paint", "hours of open-ended play"),
             ("imaginative play at home", "playdates and rainy afternoons")),
    "clothing": (("breathable, soft-washed fabric", "reinforced seams", "a tag-free collar", "a relaxed, easy fit",
                  "colorfast dyes that stay bright wash after wash"),
                 ("weekends, travel, and everyday wear", "layering through every season")),
    "beauty": (("a lightweight, non-greasy formula", "plant-based ingredients", "a fresh, subtle scent",
                "long-lasting hydration", "a recyclable bottle"),
               ("daily morning and evening routines", "dry or tired skin and hair")),
    "tools": (("a rubberized anti-slip grip", "hardened steel construction", "a lifetime warranty",
               "a clear storage case", "precise, accurate markings"),
              ("home repairs and furniture assembly", "professional job sites")),
    "sports": (("durable, lightweight materials", "a carry strap", "a non-slip texture", "quick-dry fabric",
                "a compact packed size"),
               ("workouts at home or the gym", "hiking, camping, and travel")),
    "pet": (("chew-resistant stitching", "a machine-washable cover", "a non-slip bottom", "easy-clean materials",
             "a design vets recommend"),
            ("dogs and cats of all sizes", "indoor pets and busy owners")),
}

_AUTHORS = (
    "Eleanor Hart", "James Whitaker", "Renée Dubois", "Marcus Bell", "Sofia Alvarez", "Thomas Reed", "Hannah Cole",
    "Daniel Okafor", "Claire Montgomery", "José Álvarez", "Priya Raman", "Oliver Grant", "Zoë Hale", "Nathan Cross",
    "Amelia Stone", "Chloé Martin", "Samuel Price", "Grace Lindqvist", "Isaac Moreno", "Lucy Fairbanks",
    "Henry Ashworth", "Maya Patel", "Victor Lang", "Nora Kincaid", "Felix Brandt", "Ruth Abernathy",
)
_BOOK_ADJ = (
    "Silent", "Hidden", "Last", "Forgotten", "Winter", "Burning", "Broken", "Golden", "Distant", "Secret", "Quiet",
    "Wild", "Painted", "Lost", "Northern", "Midnight", "Hollow", "Crimson", "Paper", "Glass", "Salt", "Iron", "Summer",
    "Ashen", "Velvet", "Shifting", "Drowned", "Lantern", "Sleeping", "Wandering", "Scarlet", "Borrowed", "Bitter",
    "Sunken", "Evening", "Morning", "Autumn", "Frozen", "Starlit", "Vanishing", "Last Good", "Unfinished", "Amber",
)
_BOOK_NOUN = (
    "Garden", "River", "House", "Orchard", "Lighthouse", "Harbor", "Letter", "Daughter", "Keeper", "Bridge",
    "Island", "Library", "Country", "Season", "Map", "Promise", "Shore", "Inheritance", "Widow", "Apprentice",
    "Cartographer", "Clockmaker", "Tide", "Valley", "Hours", "Sisters", "Road", "Archive", "Crossing", "Forest",
    "Wife", "Son", "Orchestra", "Vineyard", "Bookshop", "Mill", "Ferry", "Winter", "Summer", "Chapel", "Secret",
    "Return", "Silence", "Mapmaker", "Beekeeper", "Weaver", "Physician", "Tailor", "Station", "Manor",
)
_FIRST_NAMES = (
    "Clara", "Eliza", "Thomas", "Margaret", "Julian", "Adele", "Rosalind", "Arthur", "Beatrix", "Edmund", "Lydia",
    "Sebastian", "Imogen", "Theodore", "Cecily", "August", "Harriet", "Silas", "Vivienne", "Jasper", "Louisa",
    "Ambrose", "Florence", "Gideon", "Matilda", "Rafael", "Odette", "Caspian", "Honor", "Leopold",
)
_LAST_NAMES = (
    "Webb", "Ashby", "Carrow", "Finch", "Holloway", "Lark", "Marsh", "Pemberton", "Quill", "Rowe", "Sinclair",
    "Thorne", "Vance", "Whitlock", "Abbott", "Blackwood", "Crane", "Dunmore", "Everly", "Fairfax", "Greer",
    "Hart", "Ives", "Keene", "Lowell", "Mercer", "Nash", "Oakes", "Prentice", "Radcliffe",
)
_PLACES = (
    "Marlow Bay", "Ashford", "the Northern Sea", "Little Haven", "Saint-Étienne", "Calder Hill", "Rosewood",
    "the Lowlands", "Kestrel Point", "Bellmore", "Alder Creek", "Château Roux", "Port Sorrel", "Windermere",
    "the Salt Marshes", "Greywater", "Lisbon", "Old Vienna", "Cape Morrow", "Hollis Fen", "Ravenscar",
    "Tallow Creek", "Montségur", "Harrowgate", "Pine Hollow", "Eastwick", "Brightwater", "Lake Ardent", "Dunmore",
    "Cedar Falls",
)
_GENRES = (("A Novel", "novel"), ("A Thriller", "thriller"), ("A Mystery", "mystery"), ("A Love Story", "love story"),
           ("A Novel of Suspense", "novel of suspense"), ("A Historical Novel", "historical novel"),
           ("A Ghost Story", "ghost story"), ("Stories", "collection of stories"))
_BINDINGS = (("Paperback", "Paperback"), ("Hardcover", "Hardcover"), ("Kindle Edition", "Kindle"),
             ("Mass Market Paperback", "Mass Market Paperback"))
_PREMISES = (
    "a lighthouse keeper who finds a letter that was never meant to be sent",
    "two sisters who inherit a crumbling house and the secrets inside it",
    "a young cartographer hired to map an island that does not appear on any chart",
    "a detective who returns to her hometown to solve a decades-old disappearance",
    "a widowed baker rebuilding her life one loaf at a time",
    "an apprentice clockmaker caught between two rival families",
    "a family reunion that unravels over a single stormy weekend",
    "a journalist who uncovers a conspiracy in a quiet seaside town",
    "a pianist who loses her hearing and learns to listen again",
    "a boy and his grandfather on a last road trip across the country",
    "strangers bound together by a missing painting",
    "a marine biologist who discovers something impossible beneath the ice",
)
_PROTAGONISTS = (
    "a stubborn young woman", "a retired schoolteacher", "an orphaned boy", "a disgraced surgeon",
    "a restless archivist", "two estranged brothers", "a reluctant heir", "a grieving father",
)
_ARCS = (
    "old loyalties are tested", "long-buried secrets come to light", "the past refuses to stay buried",
    "a fragile friendship becomes something more", "the truth slowly surfaces", "a town takes sides",
)
_FICTION_ADJ = ("gripping", "luminous", "haunting", "heartfelt", "sweeping", "witty", "tender", "propulsive")
_PRAISE = ("Unforgettable.", "A triumph of storytelling.", "I could not put it down.", "Wise, warm, and wonderful.",
           "The best book I have read this year.")
_SUBJECTS = (
    "Container Gardening", "Sourdough Baking", "Personal Finance", "Watercolor Painting", "Home Organization",
    "Python Programming", "Birdwatching", "Woodworking", "Meal Prep", "Marathon Training", "Digital Photography",
    "Mindful Parenting", "Small Business Marketing", "Knitting", "Beekeeping", "Houseplant Care", "Chess Strategy",
    "Public Speaking", "Vegetarian Cooking", "Family History Research", "Calligraphy", "Home Brewing",
    "Bread Making", "Guitar Basics", "Stock Market Investing", "Yoga", "Pottery", "Urban Sketching",
    "Fly Fishing", "Bookkeeping", "Sewing", "Composting", "Negotiation", "Spanish Grammar", "Data Analysis",
    "Drawing Portraits", "Cake Decorating", "Camping", "Astronomy", "Interior Design", "Wild Foraging",
    "Raised Bed Gardening", "Meditation", "Retirement Planning", "Dog Training", "Cheese Making", "Embroidery",
    "Creative Writing", "Home Repair", "Canning and Preserving", "Strength Training", "Watercolor Landscapes",
    "Excel Spreadsheets", "Sketchnoting", "Mushroom Growing", "Crochet", "Sailing", "Bird Photography",
    "Budget Travel", "Job Interviews",
)
_AUDIENCES = ("Busy People", "Kids", "Seniors", "Small Spaces", "Everyone", "Teens", "Families", "Professionals",
              "Absolute Beginners", "Weekend Warriors")
_NF_EDITIONS = (
    ("", ""), ("", ""), ("", ""),
    (", 2nd Edition", " This second edition has been fully updated."),
    (", 3rd Edition", " This third edition adds two new chapters."),
    (", Revised and Updated", " This revised and updated edition reflects the latest techniques."),
    (", 10th Anniversary Edition", " This 10th anniversary edition includes a new introduction by the author."),
    (" (2024 Edition)", " The 2024 edition covers the newest tools and resources."),
)
_NF_SUBTITLES = ("A Step-by-Step Approach", "Everything You Need to Know", "Practical Lessons for Everyday Life",
                 "100 Projects to Get You Started", "A Beginner's Guide", "Tips, Tricks, and Techniques",
                 "The Essential Reference", "From First Steps to Mastery")
_CHILD_NAMES = (
    "Milo", "Lulu", "Pip", "Rosie", "Otis", "Hazel", "Benny", "Tilly", "Finn", "Mabel", "Ziggy", "Poppy", "Arlo",
    "Juniper", "Teddy", "Wren", "Ollie", "Daisy", "Gus", "Ivy", "Clementine", "Rufus", "Nell", "Bo", "Maisie",
    "Percy", "Lottie", "Kit", "Sunny", "Fern",
)
_CHILD_THINGS = (
    "Moon Kite", "Lost Mitten", "Giant Pumpkin", "Rainy Day", "Sleepy Dragon", "Purple Crayon", "Busy Beaver",
    "Snowy Owl", "Magic Garden", "Noisy Drum", "Tiny Tugboat", "Runaway Balloon", "Brave Little Snail",
    "Midnight Picnic", "Wobbly Tooth", "Big Red Wagon", "Hiccuping Hippo", "Singing Whale", "Grumpy Cloud",
    "Polka-Dot Umbrella", "Lonely Lighthouse", "Secret Tree House", "Dancing Bear", "Sleepy Moon", "Giant Sneeze",
    "Pancake Parade", "Little Green Frog", "Snow Day", "Shy Dinosaur", "Paper Boat",
)
_CHILD_PATTERNS = ("%s and the %s", "%s Meets the %s", "%s Finds the %s", "Where Is %s\u2019s %s?")
_MUSIC_ADJ = ("Midnight", "Electric", "Paper", "Golden", "Blue", "Wild", "Hollow", "Silver", "Velvet", "Neon",
              "Northern", "Slow", "Broken", "Bright", "Quiet", "Lonesome", "Crystal", "Ragged", "Amber", "Distant",
              "Sweet", "Restless", "Hidden", "Strange", "Falling", "Burning", "Summer", "Winter", "Tender", "Holy")
_MUSIC_NOUN = ("Rivers", "Lanterns", "Hearts", "Highways", "Skies", "Echoes", "Horses", "Windows", "Summers",
               "Rooms", "Streets", "Waves", "Letters", "Machines", "Gardens", "Ghosts", "Roads", "Fires", "Stars",
               "Mountains", "Radios", "Mirrors", "Bridges", "Dreams", "Shadows", "Oceans", "Cities", "Rain",
               "Birds", "Wires")
_ARTISTS = (("The Juniper Lane", "band"), ("Maya Solis", "singer-songwriter"), ("Copper Foxes", "band"),
            ("Elliot Vance", "singer-songwriter"), ("The Harbor Lights", "band"), ("Nina Roux", "singer"),
            ("Delta Moth", "duo"), ("The Quiet Engines", "band"), ("Ava Castell\u00f3", "singer-songwriter"),
            ("Paper Satellites", "collective"), ("Jonah Reyes Trio", "trio"), ("The Wandering Kind", "band"),
            ("Lila Brooks", "singer"), ("Static Orchard", "duo"), ("The Low Tides", "quartet"),
            ("Marisol Vega", "singer-songwriter"))
_MUSIC_GENRES = ("indie rock", "folk", "jazz", "soul", "bluegrass", "synth-pop", "country", "blues", "chamber pop")
_ORDINALS = ("debut", "second", "third", "fourth", "fifth", "long-awaited sixth")
_MUSIC_PATTERNS = ("%s %s", "%s %s", "Live at the %s %s", "The %s %s Sessions", "%s %s, Vol. 2", "Songs of %s %s",
                   "%s %s (Acoustic)", "%s %s: Live")
_MUSIC_EDITIONS = (
    ("", ""),
    (" (Deluxe Edition)", "This deluxe edition adds four bonus tracks and expanded liner notes."),
    (" (Remastered)", "Newly remastered from the original master tapes, it has never sounded better."),
    (" [Audio CD]", "This is the original Audio CD release."),
)
_MOVIE_ADJ = ("Last", "Dark", "Silent", "Long", "Lost", "Red", "Endless", "Final", "Frozen", "Broken", "Hidden",
              "Savage", "Burning", "Lonely", "Crooked", "Golden", "Black", "Silver", "Distant", "Cold", "Wild",
              "Deadly", "Quiet", "Eternal", "Midnight", "Northern", "Second")
_MOVIE_NOUN = ("Harbor", "Frontier", "Signal", "Summer", "Highway", "Witness", "Kingdom", "Horizon", "Run", "Game",
               "Storm", "Promise", "Station", "Escape", "Heist", "Passage", "Sky", "Target", "Voyage", "Outpost",
               "Empire", "Descent", "Verdict", "Harvest", "Crossing", "Shadow", "Island", "Pursuit")
_MOVIE_PATTERNS = ("The %s %s", "The %s %s", "%s %s", "The %s %s of %s", "The %s %s at %s", "The %s %s II",
                   "%s %s: The Return", "The %s %s of %s")
_ACTORS = ("Daniel Marsh", "Laura Kent", "Michael Torres", "Emma Sinclair", "Robert Hale", "Isabel Fontaine",
           "Jack Donovan", "Sarah Whitfield", "Luc Moreau", "Hana Sato", "Peter Calloway", "Anna Lindgren")
_MOVIE_GENRES = ("thriller", "drama", "comedy", "western", "science fiction adventure", "romantic comedy",
                 "crime drama", "war film")
_MOVIE_FORMATS = (
    ("", "", "DVD"),
    (" [DVD]", "This DVD includes the theatrical trailer and a behind-the-scenes featurette.", "DVD"),
    (" [Blu-ray]", "Presented in high definition on Blu-ray, with director's commentary and deleted scenes.",
     "Blu-ray"),
    (" [VHS]", "This VHS tape presents the original theatrical release.", "VHS Tape"),
    (" (Widescreen Edition) [DVD]", "This widescreen edition DVD preserves the original theatrical aspect ratio.",
     "DVD"),
    (" (Special Edition)", "The special edition adds a making-of documentary and a photo gallery.", "DVD"),
)

_FICTION_OPENERS = (
    "{T} is {a}\u2019s {adj} {g} about {p}.",
    "In {T}, {a} tells the story of {p}.",
    "From {a} comes {T}, a {adj} {g} about {p}.",
    "{T} is a {adj} {g} by {a} about {p}.",
)
_FICTION_BODIES = (
    "{a} writes with remarkable restraint, and every chapter builds toward an unforgettable ending.",
    "Readers who love atmospheric fiction will find much to admire in {T}.",
    "At its heart, this is a story about grief, memory, and second chances.",
    "Told in alternating voices, it moves between past and present with quiet confidence.",
    "Praise for {a}: \u201c{praise}\u201d",
    "{a} is the author of several previous books and lives in {city}.",
    "This edition includes a reading group guide and an interview with the author.",
    "The result is a {adj} {g} that lingers long after the final page.",
    "Fans of {a}'s earlier work will recognize the careful prose and vivid sense of place.",
)
_NF_OPENERS = (
    "{T} is a practical {g} to {s} from {a}.",
    "In {T}, {a} makes {s} approachable for readers at every level.",
    "Written by {a}, {T} is the {g} to {s} that beginners have been waiting for.",
)
_NF_BODIES = (
    "Clear instructions and step-by-step photographs guide you through each stage.",
    "{a} draws on twenty years of teaching experience.",
    "Common mistakes are explained with simple fixes you can apply right away.",
    "Each chapter ends with exercises and a short summary.",
    "Whether you are a complete beginner or want to refresh your skills, this {g} has something for you.",
    "Includes a glossary, a resource list, and an index.",
    "Readers praise its friendly tone and practical advice.",
    "You'll learn which tools you really need and which ones you can skip.",
)
_CHILD_OPENERS = (
    "{T} is a charming {g} by {a} for young readers.",
    "{a}\u2019s {g} {T} is a gentle story for little ones.",
    "In {T}, a delightful {g}, {h} meets the {t}.",
)
_CHILD_BODIES = (
    "Bright, playful illustrations bring every page to life.",
    "Perfect for bedtime, it gently explores friendship and courage.",
    "Simple, rhythmic text makes it ideal for reading aloud.",
    "{h} is a character little ones will want to visit again and again.",
    "Recommended for ages 3 to 7.",
    "Parents and teachers love the discussion questions at the back of the book.",
)
_BOOK_CLOSERS = ("A perfect pick for book clubs.", "Includes a preview of the next book.",
                 "A New York Times Notable Book.", "")
_MUSIC_OPENERS = (
    "{T} is the {ord} studio album from {genre} {act} {a}.",
    "On {T}, {a} delivers eleven {genre} songs about love, distance, and coming home.",
    "{a} returns with {T}, a {adj} {genre} album recorded live in the studio.",
)
_MUSIC_BODIES = (
    "Highlights include \u201c{song1}\u201d and \u201c{song2}.\u201d",
    "Recorded in {city}, the album blends warm analog textures with sharp, modern production.",
    "The songs move from quiet, fingerpicked ballads to full-band anthems.",
    "Critics have called it the most personal record of {ap} career.",
    "Guest musicians include a string quartet and a horn section.",
    "Longtime fans will find plenty to love here.",
    "The album closes with a stunning nine-minute title track.",
)
_MOVIE_OPENERS = (
    "{T} is a {year} {genre} starring {a} and {a2}.",
    "{a} stars in {T}, a {adj} {genre} about {p}.",
    "In {T}, {a} and {a2} lead a strong cast in this {adj} {genre}.",
)
_MOVIE_BODIES = (
    "Directed by {d2}, the film follows {p}.",
    "The cinematography captures every landscape in stunning detail.",
    "Nominated for three awards, it has become a favorite with audiences around the world.",
    "A tense, beautifully acted story that keeps you guessing until the final scene.",
    "Rated PG-13 for action, violence, and brief language.",
    "The original score adds tension to every scene.",
)
_MEDIA_CLOSERS = ("", "Running time: 118 minutes.", "Not rated.", "")

_BOOK_EDITIONS = ("Paperback", "Hardcover", "Kindle", "Mass Market Paperback", "Library Binding", "Audio CD")
_MUSIC_TAIL_EDITIONS = ("Audio CD", "MP3 Music", "Vinyl")


# ---------------------------------------------------------------- product families

Rnd = Callable[[], float]
Make = Callable[[Rnd], tuple[str, dict[str, str], str]]


Template = tuple[str, Callable[[dict[str, str]], Any]]
_FIELD = re.compile(r"\{(\w+)\}")


def _template(text: str) -> Template:
    """A "{field}" template as a %-format string and a getter of its values: `fmt % getter(d)`, twice as fast."""
    keys = _FIELD.findall(text)
    fmt = _FIELD.sub("%s", text.replace("%", "%%"))
    return fmt, (itemgetter(*keys) if keys else _no_fields)


def _no_fields(d: dict[str, str]) -> tuple[()]:
    return ()


@dataclass(frozen=True)
class _Family:
    """One kind of product: a maker of (title, attributes, required sentence) and the prose templates."""

    name: str
    weight: float
    media: bool
    make: Make
    openers: tuple[Template, ...]
    blocks: tuple[tuple[Template, ...], ...]  # blocks[k]: k body sentences in a few orders, some with a closing line


def _pick(seq: Any, rnd: Rnd) -> Any:
    return seq[int(rnd() * len(seq))]


def _pool(size: int, seed: str, *choices: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    """Precomputed combinations of independent attributes: one random draw per record instead of many."""
    rng = Random(f"titlegen-synthetic-pool:{seed}")
    return tuple(tuple(c[int(rng.random() * len(c))] for c in choices) for _ in range(size))


def _variant_text(variant: str) -> str:
    """How a title's variant reads in a sentence: "Navy, Large" -> "navy, size large", "Ages 3+" -> "ages 3 and up"."""
    if ", " in variant:
        color, size = variant.split(", ")
        return f"{color.lower()}, size {size.lower()}"
    return _text_case(variant.replace("+", " and up"))


def _goods_maker(category: str, plural: bool) -> Make | None:
    """A title/attribute maker for the singular (or plural) product nouns of one goods category."""
    _, brands, variants, variant_tmpl, _, products = _GOODS[category]
    default_feats, default_uses = _CATEGORY_FEATURES.get(category, ((), ()))
    prods = []
    for product in products:
        noun, mods = product[0], product[1]
        if noun.endswith("s") != plural:
            continue
        feats = product[2] if len(product) > 2 else default_feats
        uses = product[3] if len(product) > 3 else default_uses
        prods.append((noun, _text_case(noun), tuple((m, _text_case(m)) for m in mods), feats, uses))
    if not prods:
        return None
    var = tuple((v, variant_tmpl.replace("{v}", _variant_text(v))) for v in variants)
    combos = tuple((f"{mod} {noun}", mod_text, noun_text, feats[i], feats[(i + 1) % len(feats)],
                    feats[(i + 2) % len(feats)], use) for noun, noun_text, mods, feats, uses in prods
                   for mod, mod_text in mods for i in range(len(feats)) for use in uses)
    n_brands, n_combos, n_var = len(brands), len(combos), len(var)
    letters = "ABCDEFGHJKLMNPRSTVWXZ"
    prefixes = tuple(f" {a}{b}-" for a in letters for b in letters)
    scale = len(prefixes) / 0.85

    def make(rnd: Rnd) -> tuple[str, dict[str, str], str]:
        r = rnd() * n_brands
        brand = brands[int(r)]
        name, mod_text, noun_text, f1, f2, f3, use = combos[int((r % 1) * n_combos)]
        r = rnd()
        code = ""
        if r >= 0.15:
            r = (r - 0.15) * scale
            i = int(r)
            code = f"{prefixes[i]}{100 + int((r - i) * 900)}"
        d = {"b": brand, "c": code, "m": mod_text, "n": noun_text, "u": use, "f1": f1, "f2": f2, "f3": f3}
        r = rnd()
        if r < 0.7:
            vt, vs = var[int(r / 0.7 * n_var)]
            return f"{brand}{code} {name}, {vt}", d, vs
        return f"{brand}{code} {name}", d, ""

    return make


_FICTION_POOL = _pool(2048, "fiction", _AUTHORS, _PREMISES, _PROTAGONISTS, _ARCS, _FICTION_ADJ, _PRAISE, _PLACES)
_FICTION_PATTERNS: tuple[Callable[[str, str, str, str, str, str], str], ...] = (
    lambda a, n, n2, p, f, l: f"The {a} {n}",
    lambda a, n, n2, p, f, l: f"The {n} of {p}",
    lambda a, n, n2, p, f, l: f"A {n} in {p}",
    lambda a, n, n2, p, f, l: f"The {n}\u2019s {n2}",
    lambda a, n, n2, p, f, l: f"The {a} {n} of {p}",
    lambda a, n, n2, p, f, l: f"The {a} {n} of {p}",
    lambda a, n, n2, p, f, l: f"The {a} {n} of {p}",
    lambda a, n, n2, p, f, l: f"The {n} of {f} {l}",
    lambda a, n, n2, p, f, l: f"The {n} of {f} {l}",
    lambda a, n, n2, p, f, l: f"{f} {l} and the {a} {n}",
    lambda a, n, n2, p, f, l: f"{f} {l} and the {a} {n}",
    lambda a, n, n2, p, f, l: f"The {a} {n} of {f} {l}",
)


def _make_fiction(rnd: Rnd) -> tuple[str, dict[str, str], str]:
    place = _PLACES[int(rnd() * len(_PLACES))]
    r = rnd() * len(_BOOK_NOUN)
    noun = _BOOK_NOUN[int(r)]
    r = (r % 1) * len(_BOOK_NOUN)
    noun2 = _BOOK_NOUN[int(r)]
    r = (r % 1) * len(_BOOK_ADJ)
    adj = _BOOK_ADJ[int(r)]
    r = (r % 1) * len(_FIRST_NAMES)
    first = _FIRST_NAMES[int(r)]
    r = (r % 1) * len(_LAST_NAMES)
    last = _LAST_NAMES[int(r)]
    r = (r % 1) * len(_FICTION_PATTERNS)
    core = _FICTION_PATTERNS[int(r)](adj, noun, noun2, place, first, last)
    r = (r % 1) * len(_GENRES)
    sub, genre = _GENRES[int(r)]
    title = f"{core}: {sub}"
    edition = ""
    r = rnd()
    if r < 0.3:
        binding, edition = _BINDINGS[int(r / 0.3 * len(_BINDINGS))]
        title = f"{title} ({binding})"
    author, premise, hero, arc, adj, praise, city = _FICTION_POOL[int(rnd() * len(_FICTION_POOL))]
    d = {"T": core, "a": author, "g": genre, "p": premise, "adj": adj, "praise": praise, "city": city, "e": edition}
    return title, d, f"Set in {place}, this {genre} follows {hero} as {arc}."


_SUBJECT_TEXT = tuple(_text_case(s) for s in _SUBJECTS)


def _make_nonfiction(rnd: Rnd) -> tuple[str, dict[str, str], str]:
    r = rnd() * len(_SUBJECTS)
    subject, text = _SUBJECTS[int(r)], _SUBJECT_TEXT[int(r)]
    r = (r % 1) * len(_NF_SUBTITLES)
    sub = _NF_SUBTITLES[int(r)]
    r = (r % 1) * len(_AUDIENCES)
    audience = _AUDIENCES[int(r)]
    r = (r % 1) * len(_NF_EDITIONS)
    revision, revision_note = _NF_EDITIONS[int(r)]
    r = r % 1
    if r < 0.15:
        core, g = f"The Complete Guide to {subject} for {audience}", "guide"
    elif r < 0.3:
        core, g = f"{subject} for {audience}", "guide"
    elif r < 0.5:
        core, g = f"{subject} Made Simple: {sub}", "guide"
    elif r < 0.7:
        core, g = f"The {subject} Handbook: {sub}", "handbook"
    elif r < 0.85:
        core, g = f"Mastering {subject}: {sub}", "book"
    else:
        core, g = f"{subject} for {audience}: {sub}", "book"
    title = core + revision
    edition = ""
    r = rnd()
    if r < 0.3:
        binding, edition = _BINDINGS[int(r / 0.3 * len(_BINDINGS))]
        title = f"{title} ({binding})"
    d = {"T": core, "a": _AUTHORS[int(rnd() * len(_AUTHORS))], "g": g, "s": text, "e": edition}
    return title, d, (f"This {g} covers the essentials of {text}, from the first steps to advanced techniques."
                      f"{revision_note}")


def _make_children(rnd: Rnd) -> tuple[str, dict[str, str], str]:
    r = rnd() * len(_CHILD_NAMES)
    name = _CHILD_NAMES[int(r)]
    r = (r % 1) * len(_CHILD_THINGS)
    thing = _CHILD_THINGS[int(r)]
    r = (r % 1) * len(_CHILD_PATTERNS)
    core = _CHILD_PATTERNS[int(r)] % (name, thing)
    r = r % 1
    if r < 0.3:
        title, g = f"{core} (Picture Book)", "picture book"
    elif r < 0.45:
        title, g = f"{core} (Board Book)", "board book"
    else:
        title, g = core, "picture book"
    d = {"T": core, "a": _AUTHORS[int(rnd() * len(_AUTHORS))], "g": g, "h": name, "t": thing.lower(), "e": ""}
    return title, d, f"When {name} discovers the {thing.lower()}, an unforgettable adventure begins."


_SONGS = tuple(f"{a} {n}" for a in _MUSIC_ADJ for n in _MUSIC_NOUN)
_MUSIC_POOL = _pool(2048, "music", _ARTISTS, _MUSIC_GENRES, _ORDINALS, _FICTION_ADJ, _PLACES, _SONGS, _SONGS)
_MOVIE_POOL = _pool(2048, "movies", _ACTORS, _ACTORS, _AUTHORS, _MOVIE_GENRES, _FICTION_ADJ, _PREMISES,
                    tuple(str(y) for y in range(1960, 2024)))


def _make_music(rnd: Rnd) -> tuple[str, dict[str, str], str]:
    r = rnd() * len(_MUSIC_ADJ)
    adj = _MUSIC_ADJ[int(r)]
    r = (r % 1) * len(_MUSIC_NOUN)
    noun = _MUSIC_NOUN[int(r)]
    r = (r % 1) * len(_MUSIC_PATTERNS)
    core = _MUSIC_PATTERNS[int(r)] % (adj, noun)
    r = (r % 1) * len(_MUSIC_EDITIONS)
    suffix, req = _MUSIC_EDITIONS[int(r)]
    (artist, act), genre, ordinal, adj, city, song1, song2 = _MUSIC_POOL[int(rnd() * len(_MUSIC_POOL))]
    d = {"T": core, "a": artist, "ap": artist + ("'" if artist.endswith("s") else "'s"), "genre": genre,
         "act": act, "ord": ordinal, "adj": adj, "city": city, "song1": song1, "song2": song2,
         "e": "Audio CD" if suffix == " [Audio CD]" else ""}
    return core + suffix, d, req


def _make_movie(rnd: Rnd) -> tuple[str, dict[str, str], str]:
    r = rnd() * len(_MOVIE_ADJ)
    adj = _MOVIE_ADJ[int(r)]
    r = (r % 1) * len(_MOVIE_NOUN)
    noun = _MOVIE_NOUN[int(r)]
    r = (r % 1) * len(_PLACES)
    place = _PLACES[int(r)]
    r = (r % 1) * len(_MOVIE_PATTERNS)
    pattern = _MOVIE_PATTERNS[int(r)]
    core = pattern % (adj, noun, place) if pattern.count("%s") == 3 else pattern % (adj, noun)
    r = (r % 1) * len(_MOVIE_FORMATS)
    suffix, req, edition = _MOVIE_FORMATS[int(r)]
    star, costar, director, genre, adj, premise, year = _MOVIE_POOL[int(rnd() * len(_MOVIE_POOL))]
    if costar == star:
        costar = _ACTORS[_ACTORS.index(star) - 1]
    d = {"T": core, "a": star, "a2": costar, "d2": director, "genre": genre, "year": year, "adj": adj,
         "p": premise, "e": edition if suffix else ""}
    return core + suffix, d, req


_BODY_COUNTS = (1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6, 8, 10, 12)
_MAX_BODIES = max(_BODY_COUNTS)


def _blocks(bodies: tuple[str, ...], closers: tuple[str, ...], seed: str) -> tuple[tuple[Template, ...], ...]:
    """For each count k, templates of k body sentences in a few shuffled orders, some with a closing line."""
    rng = Random(f"titlegen-synthetic-order:{seed}")
    orders = []
    for _ in range(4):
        order = list(bodies)
        rng.shuffle(order)
        orders.append(order + order)
    n = len(bodies)
    out: list[tuple[Template, ...]] = [()]
    for k in range(1, n + 1):
        group = []
        for j, order in enumerate(orders):
            for start in range(n):
                parts = order[start:start + k]
                closer = closers[(start * 5 + k + j) % len(closers)]
                group.append(_template(" ".join(parts + [closer] if closer else parts)))
        out.append(tuple(group))
    return tuple(out + [out[-1]] * (_MAX_BODIES - n))


def _build_families() -> tuple[_Family, ...]:
    def openers(texts: tuple[str, ...]) -> tuple[Template, ...]:
        return tuple(_template(t) for t in texts)

    fams = [
        _Family("fiction", 16, True, _make_fiction, openers(_FICTION_OPENERS),
                _blocks(_FICTION_BODIES, _BOOK_CLOSERS, "fiction")),
        _Family("nonfiction", 9, True, _make_nonfiction, openers(_NF_OPENERS),
                _blocks(_NF_BODIES, _BOOK_CLOSERS, "nonfiction")),
        _Family("children", 5, True, _make_children, openers(_CHILD_OPENERS),
                _blocks(_CHILD_BODIES, _BOOK_CLOSERS, "children")),
        _Family("music", 9, True, _make_music, openers(_MUSIC_OPENERS),
                _blocks(_MUSIC_BODIES, ("", "Total running time: 47 minutes."), "music")),
        _Family("movies", 8, True, _make_movie, openers(_MOVIE_OPENERS),
                _blocks(_MOVIE_BODIES, _MEDIA_CLOSERS, "movies")),
    ]
    for category, (weight, _, _, _, extras, products) in _GOODS.items():
        for plural in (False, True):
            make = _goods_maker(category, plural)
            if make is None:
                continue
            share = sum(p[0].endswith("s") == plural for p in products) / len(products)
            form = _plural if plural else str
            bodies = tuple(form(t) for t in _GOODS_BODIES + extras)
            fams.append(_Family(category, weight * share, False, make,
                                openers(tuple(form(t) for t in _GOODS_OPENERS)),
                                _blocks(bodies, _GOODS_CLOSERS + ("",) * 3, category)))
    return tuple(fams)


def _weighted_table(families: tuple[_Family, ...], size: int = 1024) -> tuple[_Family, ...]:
    total = sum(f.weight for f in families)
    table: list[_Family] = []
    for fam in families:
        table += [fam] * round(size * fam.weight / total)
    return tuple(table)


@lru_cache(maxsize=1)
def _tables() -> tuple[tuple[_Family, ...], tuple[_Family, ...]]:
    """Families weighted for a uniform draw: all of them, and the book-like ones (built on first use)."""
    families = _build_families()
    return _weighted_table(families), _weighted_table(tuple(f for f in families if f.media))


def _edition_tail(fam: _Family, d: dict[str, str], rnd: Rnd) -> str:
    """The boilerplate "--This text refers to the ... edition." matching the record's format."""
    if rnd() < 0.08:
        return "--This text refers to an out of print or unavailable edition of this title."
    edition = d.get("e") or _pick(_MUSIC_TAIL_EDITIONS if fam.name == "music" else
                                  ("DVD", "VHS Tape", "Blu-ray") if fam.name == "movies" else _BOOK_EDITIONS, rnd)
    return f"--This text refers to the {edition} edition."


# ---------------------------------------------------------------- HTML and whitespace noise

def _noise_tags(s: str, d: dict[str, str], rnd: Rnd) -> str:
    r = rnd()
    if r < 0.35:
        return "<p>" + s.replace(". ", ".</p><p>", 1) + "</p>"
    if r < 0.7:
        return s.replace(". ", _pick((".<br>", ".<br><br>", ".<br />", ". <br/>"), rnd), 2)
    name = d.get("b") or d.get("T") or ""
    if name and name in s:
        return s.replace(name, f"<b>{name}</b>", 1)
    return "<b>" + s.replace(". ", ".</b> ", 1)


def _noise_apostrophe(s: str, d: dict[str, str], rnd: Rnd) -> str:
    entity = _pick(("&#8217;", "&#x2019;", "&#8217;", "&amp;#8217;"), rnd)
    if "\u2019" in s:
        return s.replace("\u2019", entity)
    if "'" in s:
        return s.replace("'", _pick(("&#39;", "&#x27;", entity), rnd))
    return s + f" It{entity}s a customer favorite."


def _noise_dash(s: str, d: dict[str, str], rnd: Rnd) -> str:
    entity = _pick(("&mdash;", "&#8212;", "&ndash;"), rnd)
    if "\u2014" in s:
        return s.replace("\u2014", entity)
    i = s.find(", ")
    return s[:i] + f" {entity} " + s[i + 2:] if i > 0 else s + f" {entity} highly recommended."


def _noise_amp(s: str, d: dict[str, str], rnd: Rnd) -> str:
    if " and " in s:
        return s.replace(" and ", " &amp; ", 1)
    return s + " Care &amp; use instructions included."


def _noise_quot(s: str, d: dict[str, str], rnd: Rnd) -> str:
    name = d.get("T") or d.get("n") or ""
    if name and name in s:
        return s.replace(name, f"&quot;{name}&quot;", 1)
    return s + " Customers call it &quot;excellent&quot;."


def _noise_whitespace(s: str, d: dict[str, str], rnd: Rnd) -> str:
    r = rnd()
    if r < 0.25:
        return s.replace(". ", ".  ", 3)
    if r < 0.45:
        return s.replace(" ", "\u00a0", 2)
    if r < 0.6:
        return s.replace(". ", ".\t", 1)
    if r < 0.75:
        return " " + s.replace(". ", ".\r\n", 1) + " "
    if r < 0.9:
        return s.replace(". ", ".\x0b", 1) + "\x0c"
    return "\u200b" + s.replace(", ", ",\u00a0\u00a0", 1)


_NOISES = (_noise_tags, _noise_tags, _noise_apostrophe, _noise_dash, _noise_amp, _noise_quot, _noise_whitespace)


def _add_noise(content: str, title: str, d: dict[str, str], rnd: Rnd) -> tuple[str, str]:
    """Dirty a description (and sometimes its title) like the real dump: tags, entities, odd whitespace."""
    for _ in range(1 + int(rnd() * 3)):
        content = _NOISES[int(rnd() * len(_NOISES))](content, d, rnd)
    if title and rnd() < 0.3:
        if "\u2019" in title:
            title = title.replace("\u2019", _pick(("&#8217;", "&#x2019;"), rnd))
        elif " and " in title:
            title = title.replace(" and ", " &amp; ", 1)
        elif "'" in title:
            title = title.replace("'", "&#39;")
    return content, title


# ---------------------------------------------------------------- labels

@lru_cache(maxsize=1)
def _target_pool() -> tuple[tuple[str, str], ...]:
    """Precomputed (target_ind, target_rel) JSON bodies: sorted label ids, relevance 1.0."""
    rng = Random("titlegen-synthetic-targets")
    pool = []
    for _ in range(4096):
        k = max(1, min(300, int(rng.lognormvariate(2.5, 0.9))))
        ids = sorted({int(rng.random() * N_LABELS) for _ in range(k)})
        pool.append((",".join(map(str, ids)), ",".join(["1.0"] * len(ids))))
    return tuple(pool)


# ---------------------------------------------------------------- the generator

def iter_synthetic_lines(spec: SyntheticSpec) -> Iterator[str]:
    """Yield `spec.n_records` JSON lines (no trailing newline) in the AmazonTitles-1.3MM format."""
    return _iter_lines(spec, 0)


_Seen = tuple[str, _Family, dict[str, str], str, int]


def _prose(fam: _Family, d: dict[str, str], req: str, k: int, rnd: Rnd) -> str:
    """An opener, the required sentence and k body sentences about one product."""
    fmt, get = fam.openers[int(rnd() * len(fam.openers))]
    opener = fmt % get(d)
    group = fam.blocks[k]
    fmt, get = group[int(rnd() * len(group))]
    body = fmt % get(d)
    return f"{opener} {req} {body}" if req else f"{opener} {body}"


def _long_prose(fam: _Family, d: dict[str, str], req: str, rnd: Rnd) -> str:
    """A description of 3,000 to 19,000 characters, cut at a sentence end."""
    target = LONG_MIN_CHARS + int(rnd() * (MAX_CONTENT_CHARS - 1000 - LONG_MIN_CHARS))
    parts, size = [], 0
    while size < target:
        part = _prose(fam, d, req, len(fam.blocks) - 1, rnd)
        parts.append(part)
        size += len(part) + 1
    text = " ".join(parts)[:target]
    cut = text.rfind(". ")
    return text[:cut + 1] if cut >= LONG_MIN_CHARS else text


def _malformed(uid: str, title: str, content: str, ind: str, rel: str, rnd: Rnd) -> str:
    """One broken line of a random kind from MALFORMED_KINDS."""
    enc = encode_basestring
    kind = MALFORMED_KINDS[int(rnd() * len(MALFORMED_KINDS))]
    if kind == "truncated":
        line = (f'{{"uid":"{uid}","title":{enc(title)},"content":{enc(content)},"target_ind":[{ind}],'
                f'"target_rel":[{rel}]}}')
        return line[:1 + int(rnd() * (len(line) - 2))]
    if kind == "array":
        return f'["{uid}",{enc(title)},{enc(content)},[{ind}],[{rel}]]'
    if kind == "missing_content":
        return f'{{"uid":"{uid}","title":{enc(title)},"target_ind":[{ind}],"target_rel":[{rel}]}}'
    bad = {"title_null": "null", "title_number": _pick(("12345", "3.5", "0", "9781234567897"), rnd),
           "title_list": f"[{enc(title or 'Untitled')},{enc('Paperback')}]"}[kind]
    return f'{{"uid":"{uid}","title":{bad},"content":{enc(content)},"target_ind":[{ind}],"target_rel":[{rel}]}}'


def _iter_lines(spec: SyntheticSpec, uid_start: int) -> Iterator[str]:
    """The lines of `spec`, with uids numbered from `uid_start` (train and test files use disjoint ranges)."""
    if uid_start < 0 or uid_start + spec.n_records > UID_SPACE:
        raise ValueError(f"uids {uid_start}..{uid_start + spec.n_records} exceed the {UID_SPACE:,} available")
    rnd = Random(f"titlegen-synthetic:{spec.seed}:{uid_start}").random
    enc = encode_basestring
    targets = _target_pool()
    n_targets = len(targets)
    all_table, media_table = _tables()
    n_all, n_media = len(all_table), len(media_table)
    counts, n_counts = _BODY_COUNTS, len(_BODY_COUNTS)
    n_place = len(PLACEHOLDERS)
    mult, add = _UID_MULT, _UID_ADD

    t_both = spec.both_empty_rate
    t_etitle = t_both + spec.empty_title_rate
    t_econt = t_etitle + spec.empty_content_rate
    t_place = t_econt + spec.placeholder_rate
    t_tac = t_place + spec.title_as_content_rate
    t_long = t_tac + spec.long_content_rate
    t_dtitle = t_long + spec.duplicate_title_rate
    dup_rate, t_mal = spec.duplicate_rate, spec.duplicate_rate + spec.malformed_rate
    html_rate, bp_rate = spec.html_rate, spec.boilerplate_rate

    ring = 512
    recent: list[str] = []
    seen: list[_Seen] = []
    seen_media: list[_Seen] = []
    n_recent = n_seen = n_seen_media = 0
    index = uid_start
    for n in range(spec.n_records):
        u = rnd()
        if u < dup_rate and recent:
            yield recent[int(rnd() * len(recent))]
            continue
        uid = f"SYN{(index * mult + add) % UID_SPACE:07d}"
        index += 1
        clean = True
        entry: _Seen | None = None
        v = rnd()
        if v < t_both:
            title = content = ""
        elif t_etitle <= v < t_tac:
            fam = all_table[int(rnd() * n_all)]
            title, d, req = fam.make(rnd)
            content = "" if v < t_econt else PLACEHOLDERS[int(rnd() * n_place)] if v < t_place else title
            if not index & 3:
                entry = (title, fam, d, req, len(content))
        else:
            r = rnd()
            boilerplate = r < bp_rate
            noisy = (r * 4096) % 1 < html_rate
            source = None
            if t_long <= v < t_dtitle:
                pool = seen_media if boilerplate else seen
                if pool:
                    source = pool[int(rnd() * len(pool))]
            if source is not None:
                title, fam, d, req, old_size = source
                content = _prose(fam, d, req, counts[int(rnd() * n_counts)], rnd)
                if len(content) == old_size:
                    fmt, get = fam.openers[0]
                    content += " " + fmt % get(d)
            else:
                fam = media_table[int(rnd() * n_media)] if boilerplate else all_table[int(rnd() * n_all)]
                title, d, req = fam.make(rnd)
                if v < t_etitle:
                    title = ""
                if t_tac <= v < t_long:
                    content = _long_prose(fam, d, req, rnd)
                else:
                    openers = fam.openers
                    r = rnd() * len(openers)
                    i = int(r)
                    fmt, get = openers[i]
                    opener = fmt % get(d)
                    r = (r - i) * n_counts
                    i = int(r)
                    group = fam.blocks[counts[i]]
                    fmt, get = group[int((r - i) * len(group))]
                    body = fmt % get(d)
                    content = f"{opener} {req} {body}" if req else f"{opener} {body}"
            if boilerplate:
                content += (" " if rnd() < 0.4 else "") + _edition_tail(fam, d, rnd)
            if noisy:
                clean = False
                content, noisy_title = _add_noise(content, title, d, rnd)
                if source is None:
                    title = noisy_title
                if len(content) > MAX_CONTENT_CHARS:
                    content = content[:MAX_CONTENT_CHARS]
            if title and source is None and not index & 3:
                entry = (title, fam, d, req, len(content))
        if entry is not None:
            if n_seen < ring:
                seen.append(entry)
            else:
                seen[n_seen % ring] = entry
            n_seen += 1
            if fam.media:
                if n_seen_media < ring:
                    seen_media.append(entry)
                else:
                    seen_media[n_seen_media % ring] = entry
                n_seen_media += 1
        ind, rel = targets[int(rnd() * n_targets)]
        if u < t_mal and n:
            yield _malformed(uid, title, content, ind, rel, rnd)
            continue
        if clean:
            line = (f'{{"uid":"{uid}","title":"{title}","content":"{content}","target_ind":[{ind}],'
                    f'"target_rel":[{rel}]}}')
        else:
            line = (f'{{"uid":"{uid}","title":{enc(title)},"content":{enc(content)},"target_ind":[{ind}],'
                    f'"target_rel":[{rel}]}}')
        if n_recent < ring:
            recent.append(line)
        else:
            recent[n_recent % ring] = line
        n_recent += 1
        yield line


# ---------------------------------------------------------------- writing files

def write_synthetic(path: Path | str, spec: SyntheticSpec) -> Path:
    """Write the lines of `spec` to `path` (gzip when it ends in .gz), atomically; returns the path."""
    return _write_lines(Path(path), _iter_lines(spec, 0))


def _write_lines(path: Path, lines: Iterator[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            out: Any = (gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1)
                        if path.name.endswith(".gz") else raw)
            while chunk := list(itertools.islice(lines, 8192)):
                out.write(("\n".join(chunk) + "\n").encode("utf-8"))
            if out is not raw:
                out.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def write_synthetic_dataset(out_dir: Path | str, n_train: int, n_test: int, seed: int = 0,
                            **rates: Any) -> dict[str, Path]:
    """Write synthetic trn.json and tst.json (disjoint uids) to `out_dir`; `rates` are SyntheticSpec fields."""
    out = Path(out_dir)
    train = SyntheticSpec(n_records=n_train, seed=seed, **rates)
    test = SyntheticSpec(n_records=n_test, seed=seed, **rates)
    if n_train + n_test > UID_SPACE:
        raise ValueError(f"n_train + n_test must be <= {UID_SPACE:,}")
    return {"trn": _write_lines(out / "trn.json", _iter_lines(train, 0)),
            "tst": _write_lines(out / "tst.json", _iter_lines(test, n_train))}
